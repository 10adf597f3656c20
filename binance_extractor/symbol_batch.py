"""Several symbols in one task (``symbols_per_task`` > 1, #25): one failing symbol does not stop the others, and a
retry repeats only the symbols that did not succeed.

Why the audit table decides what a retry skips: Airflow clears a failed try's XCom, and the task's own memory is
gone with its process (or pod), so the only durable record of "this symbol is done for this DAG run" is the
store. Every job writes one audit row per symbol (``pipeline.run_job``) labelled with ``--requested-by``, which a
scheduled DAG run sets to ``airflow:<dag>/<run_id>``: a success row under that label in every readable store means
an earlier try of the same run extracted that symbol, and the next try leaves it alone. A store-less output (JSON
lines only) has no such record, so everything runs again (idempotent upserts make that safe in the stores).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from binance_extractor.errors import (
    BudgetUnavailableError,
    ExtractorError,
    FatalAPIError,
    InputError,
    IPBannedError,
    RateLimitedError,
    SinkError,
)
from binance_extractor.pipeline import Job, JobResult, stored_last
from binance_extractor.sinks.base import stores

log = logging.getLogger(__name__)

# Failures that concern every symbol of the task alike (the IP is paused or banned, the database is gone):
# trying the next symbol would only fail again and spend budget, so the task stops at once.
STOP_ALL: tuple[type[BaseException], ...] = (IPBannedError, RateLimitedError, BudgetUnavailableError, SinkError)
# Failures a retry cannot cure: when every failed symbol failed this way the task fails without retry.
NO_RETRY: tuple[type[BaseException], ...] = (InputError, FatalAPIError)
RECENT_RUNS = 20  # audit rows looked at per (table, symbol): the tries of one run are the newest ones
SKIPPED = "done_earlier"  # JobResult.outcome of a symbol an earlier try of the same run extracted


class SymbolsFailedError(ExtractorError):
    """Some symbols of a multi-symbol task failed (the others were stored); retryable unless all are bad input."""

    def __init__(self, failures: dict[str, BaseException]) -> None:
        self.failures = failures
        listed = "; ".join(f"{sym}: {type(exc).__name__}: {exc}" for sym, exc in failures.items())
        super().__init__(f"{len(failures)} symbol(s) failed: {listed}"[:1000])


@dataclass
class BatchOutcome:
    results: list[JobResult] = field(default_factory=list)
    failures: dict[str, BaseException] = field(default_factory=dict)

    def raise_if_failed(self) -> None:
        """Every failure was bad input: the first one (no retry); otherwise one retryable error naming them all."""
        if not self.failures:
            return
        errors = list(self.failures.values())
        if all(isinstance(e, NO_RETRY) for e in errors):
            raise errors[0]
        raise SymbolsFailedError(self.failures)


def done_earlier(job: Job, sinks: Sequence[Any]) -> JobResult | None:
    """The JobResult of an earlier try of the same run when every readable store audits a success of this
    ``requested_by`` for the job's (table, symbol); None when the symbol still has to run."""
    readable = stores(sinks)
    if not readable or job.requested_by in ("", "cli"):
        return None  # nothing durable to go by, or no run label to tell runs apart
    found = []
    for store in readable:
        runs = [
            r
            for r in store.recent_runs(job.dataset, job.symbol, RECENT_RUNS)
            if r.requested_by == job.requested_by and r.outcome == "success"
        ]
        if not runs:
            return None
        found.append(runs[0])
    earlier = found[0]
    if earlier.range_start is None or earlier.range_end is None:
        return None
    result = JobResult(
        job.kind.value,
        job.symbol,
        job.interval,
        job.table,
        earlier.range_start,
        earlier.range_end,
        rows_written=earlier.rows_written,
        outcome=SKIPPED,
        sinks=[s.name for s in sinks],
    )
    result.last_time = stored_last(job, sinks)
    return result


def run_batch(
    jobs: Sequence[Job],
    sinks: Sequence[Any],
    run: Callable[[Job], JobResult],
    *,
    skip_succeeded: bool,
    keep_going: bool,
) -> BatchOutcome:
    """Run ``jobs`` one after the other through ``run``; see the module doc for what is skipped and kept going."""
    out = BatchOutcome()
    for job in jobs:
        earlier = done_earlier(job, sinks) if skip_succeeded else None
        if earlier is not None:
            log.info("%s %s: done by an earlier try of %s, skipped", job.table, job.symbol, job.requested_by)
            out.results.append(earlier)
            continue
        if not keep_going:
            out.results.append(run(job))
            continue
        try:
            out.results.append(run(job))
        except STOP_ALL:
            raise
        except Exception as exc:  # audited by run_job; the next symbol still gets its turn
            log.warning("%s %s failed: %s: %s", job.table, job.symbol, type(exc).__name__, exc)
            out.failures[job.symbol] = exc
    return out
