"""One composition of a gap-filler run, for the DAG's tasks (``airflow/gapfill.py``) and the CLI (``gaps_cli.py``).

Why: the DAG splits the run into tasks (detect, chunk, fill, verify, report) and the CLI runs it in one process;
both used to put detection (listing dates, funding intervals, the closed bound, the "not fillable yet" rows)
and the report (log lines, metrics) together on their own, and could drift. ``find_holes`` and ``report_run`` are
that composition, once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from binance_extractor.catalog import Shape
from binance_extractor.gaps.detection import db_sinks, funding_intervals, onboard_starts, scan
from binance_extractor.gaps.evidence import prune_pending
from binance_extractor.gaps.models import Scan
from binance_extractor.gaps.report import build_report, emit_metrics, report_lines
from binance_extractor.gaps.settings import GapSettings
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Sink

log = logging.getLogger(__name__)


def find_holes(
    sinks: Sequence[Sink],
    client: Any,
    datasets: Sequence[Dataset],
    symbols: Sequence[str] | None,
    *,
    closed: int,
    settings: GapSettings,
    start: datetime | None = None,
    end: datetime | None = None,
    full_history: bool = False,
    prune: bool = False,
) -> list[Scan]:
    """Holes of ``datasets`` for ``symbols`` (None: every stored symbol) up to ``closed`` (the exchange's closed
    bound, taken once per run). ``full_history``: from each contract's listing date (asked of the exchange);
    funding tails judged by each contract's own interval; ``prune``: drop the "not fillable yet" rows of holes
    filled since. ``client`` may be None (``gaps`` without the exchange): no listing dates, 8 h funding tails."""
    starts = None
    if full_history and client is not None:
        names = symbols or sorted({s for d in datasets for store in db_sinks(sinks) for s in store.symbols(d)})
        starts = onboard_starts(client, names)
    funding_hours = None
    if client is not None and any(d.shape is Shape.EVENTS for d in datasets):
        funding_hours = funding_intervals(client)
    scans = scan(
        sinks,
        datasets,
        symbols,
        start=start,
        end=end,
        starts=starts,
        settings=settings,
        now=closed,
        funding_hours=funding_hours,
    )
    if prune:
        prune_pending(sinks, scans)
    return scans


def report_run(
    before: Sequence[Scan | Mapping[str, Any]],
    results: Sequence[Mapping[str, Any]],
    after: Sequence[Scan],
    open_holes: Sequence[Mapping[str, Any]],
    *,
    metrics: bool = True,
) -> dict[str, Any]:
    """The run's report (found / filled / confirmed / not fillable yet / remaining per table and symbol), logged
    as a small table and, with ``metrics``, emitted as ``binance.gaps`` / ``binance.completeness``."""
    report = build_report(before, results, after, open_holes)
    for line in report_lines(report):
        log.info("%s", line)
    if metrics:
        emit_metrics(report)
    return report
