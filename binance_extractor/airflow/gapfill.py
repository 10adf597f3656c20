"""Helpers of the gap-filler DAG's tasks (``dagfactory.gap_filler_dag``): symbols, scans, fill results.

Kept out of the factory so that it stays one screenful per DAG family; nothing here runs at import time.
"""

from __future__ import annotations

import logging
from typing import Any

from binance_extractor import config, gaps
from binance_extractor.airflow import jobspecs, orchestration

log = logging.getLogger(__name__)


def open_sinks() -> list[Any]:
    from binance_extractor.sinks import open_sinks as _open

    return _open(config.sink_names())


def close(sinks: list[Any]) -> None:
    for sink in sinks:
        sink.close()


def symbols() -> list[str]:
    """Variable ``binance_symbols`` > env ``BINANCE_SYMBOLS`` > config.yaml, syntax-checked (no exchange call)."""
    from airflow.sdk import Variable

    requested, source = orchestration.requested_symbols(Variable.get(orchestration.SYMBOLS_VARIABLE, default=None))
    valid, invalid = orchestration.check_symbol_syntax(requested)
    for sym, why in invalid.items():
        log.warning("skipping symbol %s: %s", sym, why)
    log.info("checking %d symbol(s) from %s", len(valid), source)
    return valid


def scan(symbols: list[str], end: Any, *, recheck: bool = False) -> list[gaps.Scan]:
    """Holes of every default table for ``symbols`` up to ``end`` (and what the exchange's clock says is closed),
    read from the configured sinks. ``recheck`` (the detect task): first re-ask REST for the ledger rows recorded
    before the evidence rule (``gaps.recheck``; none are left after the first run that does it), and afterwards drop
    the "not fillable yet" rows of holes filled since."""
    settings = gaps.GapSettings.load()
    from binance_extractor.airflow.hooks import BinanceFuturesHook

    client = BinanceFuturesHook(jobspecs.BINANCE_CONN_ID).get_client()  # env fallback without it
    sinks = open_sinks()
    try:
        if recheck:
            for row in gaps.recheck(sinks, client, settings=settings, checked_by="airflow:gap-filler recheck"):
                log.info(
                    "legacy ledger row %s %s [%s, %s): %s",
                    row["table"],
                    row["symbol"],
                    row["start"],
                    row["end"],
                    row["status"],
                )
        return gaps.find_holes(
            sinks,
            client,
            gaps.default_datasets(),
            symbols,
            closed=gaps.closed_before(client),  # what is closed: the exchange's clock, as for the fills
            settings=settings,
            end=end,
            full_history=config.settings().full_history,
            prune=recheck,  # the detect task: "not fillable yet" rows of holes filled since
        )
    finally:
        client.close()
        close(sinks)


def fill_results(context: Any) -> list[dict[str, Any]]:
    """Chunk results of the fill tasks that reported (a failed task reports nothing)."""
    try:
        pulled = context["ti"].xcom_pull(task_ids="fill", key="return_value")
    except Exception as exc:  # no fill ran (nothing to fill) or XCom unavailable
        log.info("no fill results: %s", exc)
        return []
    out: list[dict[str, Any]] = []
    for item in pulled if isinstance(pulled, list | tuple) else [pulled]:
        for report in item if isinstance(item, list | tuple) else [item]:
            if isinstance(report, dict):
                out.extend(report.get("chunks") or [])
    return out


def verify(chunks: list[gaps.Chunk], results: list[dict[str, Any]]) -> list[Any]:
    """Holes still open after the fill (not confirmed exchange-side), re-detected in the configured sinks, each with
    its status: ``open`` (fails the run) or ``not_fillable_yet`` (``gaps.verify``)."""
    sinks = open_sinks()
    try:
        return list(gaps.verify(chunks, sinks, results))
    finally:
        close(sinks)
