"""Daily gap filler for Binance USD-M data: Airflow DAG `binance_klines_gap_filler` (02:00 UTC).

Holes come from failed runs, our own outages, late listings and the exchange's own outages. Every day, over
every kline table (`klines_m5` ... `klines_d1`), `funding_rates` and `agg_trades`, for the configured symbols
(Variable `binance_symbols` > `BINANCE_SYMBOLS` > `include/config.yaml`), through the configured sinks:

1. **detect**: holes per (table, symbol) between the first stored row (or the listing date with `full_history`)
   and the last closed interval, found in the database (`LAG(...) OVER (PARTITION BY symbol ...)` in MySQL and
   SQLite, `$setWindowFields` + `$shift` in MongoDB). Holes already confirmed as exchange-side (`gap_ledger`)
   are left out; `gap_filler.min_gap_candles` / `max_gap_candles` filter by size. Funding holes follow each
   contract's own interval (1h, 4h or 8h); aggregate-trade holes are breaks in `agg_trade_id`.
2. **chunk**: holes split into weekly chunks (`chunk_days`), grouped so that at most `max_mapped_tasks`
   (below Airflow's `max_map_length`) mapped tasks run.
3. **fill**: one mapped task per group (pool `binance_api`), `python -m binance_extractor fill-gaps --chunk ...`
   in a pod (`BINANCE_EXTRACTOR_RUNTIME=kubernetes`) or in-process (`local`): the same argv either way. Each chunk
   is re-detected first (a retry refetches nothing already filled), refetched with the client's retries, and
   re-detected; what the exchange returned nothing for is recorded in the ledger with when, by whom and how many
   requests, so it is never fetched again.
4. **verify**: re-detects every chunk; a hole the exchange may have data for that is still open fails the run,
   naming table, symbol and range.
5. **report**: holes found, filled, confirmed exchange-side and remaining, and completeness per table and
   symbol: in the log, as the XCom `return_value` (`report` on failure) and as metrics (`binance.gaps`,
   `binance.completeness`).

The same logic from a shell: `python -m binance_extractor gaps --table klines_m5` (list) and `fill-gaps` (repair).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, task

from binance_extractor import config, gaps, jobspecs, orchestration
from binance_extractor.airflow import callbacks, dagfactory
from binance_extractor.orchestration import POOL

log = logging.getLogger(__name__)

DAG_ID = "binance_klines_gap_filler"
CRON = "0 2 * * *"


def _sinks() -> list[Any]:
    from binance_extractor.sinks import open_sinks

    return open_sinks(config.sink_names())


def _close(sinks: list[Any]) -> None:
    for sink in sinks:
        sink.close()


def _symbols() -> list[str]:
    from airflow.sdk import Variable

    requested, source = orchestration.requested_symbols(Variable.get(orchestration.SYMBOLS_VARIABLE, default=None))
    valid, invalid = orchestration.check_symbol_syntax(requested)
    for sym, why in invalid.items():
        log.warning("skipping symbol %s: %s", sym, why)
    log.info("checking %d symbol(s) from %s", len(valid), source)
    return valid


def _scan(symbols: list[str], end: Any, now: int) -> list[gaps.Scan]:
    settings = gaps.GapSettings.load()
    starts = None
    from binance_extractor.airflow.hooks import BinanceFuturesHook

    client = BinanceFuturesHook(jobspecs.BINANCE_CONN_ID).get_client()  # env fallback without it
    try:
        if config.settings().full_history:
            starts = gaps.onboard_starts(client, symbols)
        funding_hours = gaps.funding_intervals(client)  # each contract's own interval for funding tails
    finally:
        client.close()
    sinks = _sinks()
    try:
        return gaps.scan(
            sinks,
            gaps.default_tables(),
            symbols,
            end=end,
            starts=starts,
            settings=settings,
            now=now,
            funding_hours=funding_hours,
        )
    finally:
        _close(sinks)


def _fill_results(context: Any) -> list[dict[str, Any]]:
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


@task(task_id="fill", pool=POOL, map_index_template=dagfactory.LOCAL_LABEL)
def fill_local(argv: list[str], map_label: str = "", spec: dict[str, Any] | None = None) -> list[Any]:
    """In-process twin of the pod: the same ``fill-gaps`` argv through ``cli.execute``."""
    from binance_extractor import cli
    from binance_extractor.errors import FatalAPIError, InputError

    log.info("python -m binance_extractor %s", " ".join(argv))
    try:
        return list(cli.execute(list(argv)))
    except (InputError, FatalAPIError) as exc:
        raise dagfactory._fail(exc) from None


def _fill(runtime: str, specs: Any) -> Any:
    if runtime == "kubernetes":
        return dagfactory.pod_tasks("fill", "binance-gap-filler", "gaps", specs)
    return fill_local.expand_kwargs(specs)


def build_dag(runtime: str | None = None) -> DAG:
    runtime = runtime or config.runtime()
    with DAG(
        dag_id=DAG_ID,
        schedule=CronTriggerTimetable(CRON, timezone="UTC"),
        start_date=dagfactory.START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=dagfactory.DEFAULT_ARGS,
        on_failure_callback=callbacks.on_dag_failure,
        tags=["binance", "futures", "gaps", "maintenance"],
        doc_md=__doc__,
        description=f"Detect, refill and verify holes in every table, daily 02:00 UTC ({runtime} runtime)",
    ) as dag:

        @task(task_id="detect")
        def detect(**context: Any) -> dict[str, Any]:
            """Holes per (table, symbol), found in the database; ledger-known exchange holes left out."""
            from binance_extractor.timeutil import iso, now_ms

            end = context["data_interval_end"]
            scans = _scan(_symbols(), end, now_ms())
            holes = gaps.holes_of(scans)
            for s in scans:
                if s.holes or s.skipped:
                    log.info("%s %s: %d hole(s), %d missing row(s)", s.table, s.symbol, len(s.holes), s.missing)
            log.info("%d hole(s) to fill in %d (table, symbol) pair(s)", len(holes), len(scans))
            return {"end": iso(end), "scans": [s.to_dict() for s in scans], "holes": [h.to_dict() for h in holes]}

        @task(task_id="chunk")
        def chunk(found: Any, **context: Any) -> list[dict[str, Any]]:
            """Weekly chunks grouped into at most ``max_mapped_tasks`` fill tasks."""
            settings = gaps.GapSettings.load()
            cap = min(settings.max_mapped_tasks, dagfactory._max_map_length())  # a deployment may lower it
            settings = dataclasses.replace(settings, max_mapped_tasks=cap)
            holes = [gaps.Hole.from_dict(h) for h in found["holes"]]
            groups = gaps.plan_groups(holes, settings)
            by = dagfactory._requested_by(context)
            specs = [gaps.fill_spec(g, requested_by=by, xcom=runtime == "kubernetes") for g in groups]
            log.info("%d hole(s) -> %d chunk(s) in %d task(s)", len(holes), sum(map(len, groups)), len(specs))
            return [s.task_kwargs(pod=runtime == "kubernetes") for s in specs]

        @task(task_id="verify", trigger_rule="all_done")
        def verify(specs: Any, **context: Any) -> dict[str, Any]:
            """Re-detect every chunk: a hole still open (and not confirmed exchange-side) fails the run."""
            chunks = gaps.chunks_of_specs(specs)
            sinks = _sinks()
            try:
                open_holes = gaps.verify(chunks, sinks, _fill_results(context))
            finally:
                _close(sinks)
            if open_holes:
                raise dagfactory._fail(gaps.GapClosureError(gaps.closure_message(open_holes)))
            log.info("all %d chunk(s) closed", len(chunks))
            return {"chunks": len(chunks), "open": []}

        @task(task_id="report", trigger_rule="all_done")
        def report(found: Any, specs: Any, **context: Any) -> dict[str, Any]:
            """Found / filled / confirmed / remaining and completeness per table and symbol; log, XCom, metrics."""
            from binance_extractor.timeutil import now_ms, parse_time

            results = _fill_results(context)
            chunks = gaps.chunks_of_specs(specs)
            symbols = sorted({s["symbol"] for s in found["scans"]})
            after = _scan(symbols, parse_time(found["end"]), now_ms()) if symbols else []
            sinks = _sinks()
            try:
                open_holes = gaps.verify(chunks, sinks, results)
            finally:
                _close(sinks)
            out = gaps.build_report(found["scans"], results, after, open_holes)
            for line in gaps.report_lines(out):
                log.info("%s", line)
            gaps.emit_metrics(out)
            if open_holes:
                context["ti"].xcom_push(key="report", value=out)
                raise dagfactory._fail(gaps.GapClosureError(gaps.closure_message(open_holes)))
            return out

        found = detect()
        specs = chunk(found)
        filled = _fill(runtime, specs)
        verified = verify(specs)
        filled >> verified
        verified >> report(found, specs)
    return dag


dag = build_dag()
