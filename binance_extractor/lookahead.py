"""The next symbol's archive files, fetched and parsed while the current symbol loads (#25).

Why: a multi-symbol archive run is one ``pipeline.run_job`` per symbol, each with its own producer and writer.
Without this, symbol k+1's first downloads start only when symbol k's job has ended, so the database sat idle for
each symbol's download round trips and first parse (measured: the loads kept MariaDB busy ~45 % of the run, each
load itself at raw LOAD DATA speed). With it, the moment symbol k's source is exhausted (its last file is queued
for the writer, not yet loaded) symbol k+1's source starts in a thread of its own, into a small bounded queue;
symbol k+1's job then takes those pages instead of opening its source anew, and its writer starts at once.

What stays as it was: each symbol is still its own job, with its own writer, groups, transactions and audit row,
run strictly one after the other (a symbol's rows are written only once the previous symbol's job has ended and
been audited), so a failure in symbol k leaves the symbols before it committed and fails (or, with
``--keep-going``, skips) only symbol k. The prefetched source raises its error (a corrupt file...) in symbol
k+1's job, where it would have raised anyway.

Only ``--source archive`` jobs with a fixed range (``--end`` given) are looked ahead: they send no REST request
(so no weight is spent early or from another thread) and their range is planned before the job runs, with the
stores idle (``plan_range``, at the start of the previous job); the job plans its range again and uses the
prefetched pages only if both agree. Memory: at most ``DEPTH`` parsed files queued plus the source's own
``workers + 1`` in flight, for one symbol ahead.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from binance_extractor.pipeline import Job, batches, plan_range

log = logging.getLogger(__name__)

DEPTH = 4  # parsed files queued ahead (the source's download pool holds its own workers + 1 besides)
_END = object()
_POLL_S = 0.1


@dataclass
class _Failed:
    error: BaseException


class Feed:
    """One job's source iterated in a thread of its own into a bounded queue; iterate it once, close it always."""

    def __init__(
        self, job: Job, client: Any, start: datetime, end: datetime, depth: int = DEPTH, render: bool = False
    ) -> None:
        """``render``: archive files come with their CSV for the bulk loaders (``KlineBlock.rendered``)."""
        self.job, self.start, self.end, self.render = job, start, end, render
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        context = contextvars.copy_context()  # its downloads' spans join the trace of the run that started it
        self._thread = threading.Thread(
            target=context.run, args=(self._run, client), name=f"binance-lookahead-{job.symbol}", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, client: Any) -> None:
        source: Any = None
        try:
            from binance_extractor.archive_columns import KlineBlock

            source = batches(self.job, client, self.start, self.end)
            for page in source:
                if self.render and isinstance(page, KlineBlock):
                    page = page.rendered()
                if not self._put(page):
                    return
            self._put(_END)
        except BaseException as exc:  # raised again in the job that takes these pages
            self._put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # stops the source's downloads when abandoned

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the thread (and its downloads) and drop what it queued; safe to call more than once."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(_POLL_S)


class Lookahead:
    """Looks one job ahead through ``jobs`` (run in that order by ``symbol_batch.run_batch``); see the module doc.

    ``pipeline.run_job(..., ahead=this)`` calls ``claim`` (this job's prefetched pages, if any), ``plan_after``
    (the following job's range, while the stores are idle) and ``start`` (once this job's source is exhausted)."""

    def __init__(self, jobs: Sequence[Job], client: Any, depth: int = DEPTH) -> None:
        self._jobs = list(jobs)
        self._client = client
        self._depth = depth
        self._planned: tuple[Job, datetime, datetime] | None = None
        self._render = False
        self._feed: Feed | None = None
        self.claimed = 0  # jobs that took prefetched pages (tests, logs)

    @staticmethod
    def eligible(job: Job) -> bool:
        """Archive-only klines with a fixed end: no REST request, a range that does not move with the clock."""
        return (
            job.source == "archive"
            and job.timeframe is not None
            and job.dataset.entry.archive_path is not None
            and job.end is not None
        )

    def claim(self, job: Job, start: datetime, end: datetime) -> Feed | None:
        """The pages prefetched for ``job`` over exactly ``[start, end)``, or None (the job opens its source)."""
        feed, self._feed, self._planned = self._feed, None, None
        if feed is None:
            return None
        if feed.job is job and (feed.start, feed.end) == (start, end):
            self.claimed += 1
            log.debug("%s %s: archive files fetched ahead", job.table, job.symbol)
            return feed
        feed.close()  # another job (the planned one was skipped) or another range: not these pages
        return None

    def plan_after(self, job: Job, sinks: Sequence[Any]) -> None:
        """Plan the range of the job following ``job`` (call it while no writer holds the stores)."""
        self._planned = None
        following = next((self._jobs[i + 1] for i, j in enumerate(self._jobs[:-1]) if j is job), None)
        if following is None or not self.eligible(following) or following.symbol == job.symbol:
            return
        try:
            start, end = plan_range(following, sinks, self._client)
        except Exception as exc:  # its own job plans (and reports) it again
            log.debug("lookahead: could not plan %s %s: %s", following.table, following.symbol, exc)
            return
        if start < end:
            self._planned = (following, start, end)
            self._render = any(getattr(sink, "bulk_csv", False) for sink in sinks)

    def start(self) -> None:
        """Start fetching the planned job's source (the current job's source is exhausted)."""
        if self._planned is None or self._feed is not None:
            return
        job, start, end = self._planned
        self._feed = Feed(job, self._client, start, end, self._depth, self._render)

    def close(self) -> None:
        """Stop a feed nobody claimed (the batch ended or failed)."""
        feed, self._feed, self._planned = self._feed, None, None
        if feed is not None:
            feed.close()


def lookahead_for(jobs: Sequence[Job], client: Any) -> Lookahead | None:
    """A ``Lookahead`` when at least two of ``jobs`` can be looked ahead to, else None."""
    if not any(Lookahead.eligible(j) for j in jobs[1:]):
        return None
    return Lookahead(jobs, client)


__all__ = ["DEPTH", "Feed", "Lookahead", "lookahead_for"]
