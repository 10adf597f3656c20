"""The DAG factory: one function per DAG family; the files in ``dags/`` only call these.

Every DAG has the same shape: resolve the symbols (one exchangeInfo call) -> plan one CLI argv per mapped task
-> extract (a KubernetesPodOperator pod or an in-process ``@task``, chosen by ``BINANCE_EXTRACTOR_RUNTIME`` at
parse time, both running the same argv) -> summary (rows, freshness lag, asset event). Parsing does no network
or database access: the only file read is ``include/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetAlias, CronDataIntervalTimetable, CronTriggerTimetable, Param, task

from binance_extractor import config, timeframes
from binance_extractor.airflow import callbacks, jobspecs, orchestration
from binance_extractor.airflow.orchestration import POOL
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.timeframes import Timeframe

log = logging.getLogger(__name__)

# Namespace, image, service account and pod template come from config.yaml / the environment (config.namespace() ...).
NAMESPACE = config.DEFAULT_NAMESPACE
DEFAULT_IMAGE = config.DEFAULT_IMAGE
POD_TEMPLATE = config.DEFAULT_POD_TEMPLATE
START_DATE = datetime(2024, 1, 1, tzinfo=UTC)
HOURLY = "0 * * * *"
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "petrosa",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=1),
    "on_failure_callback": callbacks.on_task_failure,  # one metric + one structured event per failed task
}
MANUAL_ALIAS = "binance_klines_manual_tables"
LOCAL_LABEL = "{{ task.op_kwargs['map_label'] }}"  # the spec's label (jobspecs.task_kwargs), never argv parsed back
# The xcom sidecar gets the same hardening as the extractor container (a "restricted" namespace refuses less).
XCOM_SIDECAR_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_LABEL = "{{ task.map_label }}"


def table_asset(table: str) -> Asset:
    """The asset of one stored table (``x-`` schemes are accepted by Airflow without a provider)."""
    return Asset(name=f"binance.{table}", uri=f"x-binance://futures-um/{table}", group="binance")


def image() -> str:
    return config.image()


def _dag(
    dag_id: str,
    schedule: Any,
    *,
    tags: list[str],
    description: str,
    doc_md: str | None,
    max_active_runs: int = 1,
    priority: int | None = None,
    **settings: Any,
) -> DAG:
    """A DAG with what every family shares, so each states only what differs: start date, no catchup, task
    retries and alerts (``DEFAULT_ARGS``), the DAG failure callback, the ``binance``/``futures`` tags.
    ``priority``: every task's own ``priority_weight`` (``orchestration.priority_weight``)."""
    default_args = dict(DEFAULT_ARGS)
    if priority is not None:
        default_args.update(priority_weight=priority, weight_rule="absolute")
    return DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=max_active_runs,
        default_args=default_args,
        on_failure_callback=callbacks.on_dag_failure,
        tags=["binance", "futures", *tags],
        doc_md=doc_md,
        description=description,
        **settings,
    )


# --------------------------------------------------------------------------------------------- tasks


def fail(exc: Exception) -> Exception:
    """Bad input / stale data: fail at once, retrying cannot help."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


def _validator() -> orchestration.Validator:
    """exchangeInfo through the ``binance_default`` connection (base URL, key), or the environment without one."""
    from binance_extractor.airflow.hooks import BinanceFuturesHook

    return BinanceFuturesHook(jobspecs.BINANCE_CONN_ID).get_client().validate_symbols


def _resolve(requested: list[str], source: str) -> dict[str, Any]:
    from binance_extractor.errors import InputError

    try:
        resolution = orchestration.validate_symbols(requested, _validator(), source)
    except InputError as exc:
        raise fail(exc) from None
    for sym, why in resolution.invalid.items():
        log.warning("skipping symbol %s: %s", sym, why)
    log.info("extracting %d symbol(s) from %s: %s", len(resolution.valid), source, ",".join(resolution.valid))
    return resolution.to_dict()


@task(task_id="resolve_symbols", pool=POOL)
def symbols_task() -> dict[str, Any]:
    """Variable ``binance_symbols`` > env ``BINANCE_SYMBOLS`` > config.yaml, checked against exchangeInfo."""
    from airflow.sdk import Variable

    requested, source = orchestration.requested_symbols(Variable.get(orchestration.SYMBOLS_VARIABLE, default=None))
    return _resolve(requested, source)


def requested_by(context: Any) -> str:
    return f"airflow:{context['dag'].dag_id}/{context['run_id']}"


def pod_tasks(task_id: str, name: str, kind: str, specs: Any) -> Any:
    """One KubernetesPodOperator pod per planned spec (an XComArg of ``task_kwargs(pod=True)``): production."""
    from binance_extractor.airflow.operators import TracedKubernetesPodOperator

    return TracedKubernetesPodOperator.partial(
        task_id=task_id,
        name=name,
        namespace=config.namespace(),
        pod_template_file=str(config.pod_template()),
        service_account_name=config.service_account(),
        image=image(),
        pool=POOL,
        get_logs=True,
        do_xcom_push=True,
        xcom_sidecar_container_security_context=XCOM_SIDECAR_SECURITY,
        on_finish_action="delete_pod",
        map_index_template=POD_LABEL,
        labels={"binance-extractor/kind": kind},
    ).expand_kwargs(specs)


def _extraction(
    kind: str, dag_id: str, runtime: str, specs: Any, task_id: str = "extract", name: str | None = None
) -> Any:
    """The mapped extraction of ``specs`` (an XComArg of ``task_kwargs``) in the chosen runtime; its XComArg."""
    if runtime == "kubernetes":
        return pod_tasks(task_id, name or dag_id.replace("_", "-"), kind, specs).output
    return extract_local.override(task_id=task_id).expand_kwargs(specs)


@task(task_id="extract", pool=POOL, map_index_template=LOCAL_LABEL)
def extract_local(argv: list[str], map_label: str = "", spec: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """In-process twin of the pod: the same argv through ``cli.execute`` (``map_label``, ``spec``: UI, alerts)."""
    from binance_extractor import cli
    from binance_extractor.errors import FatalAPIError, InputError

    log.info("python -m binance_extractor %s", " ".join(argv))
    try:
        results = cli.execute(list(argv))
    except (InputError, FatalAPIError) as exc:
        raise fail(exc) from None
    return [r.to_dict() if hasattr(r, "to_dict") else r for r in results]  # fill-gaps returns plain dicts


def _summary_task(kind: DataKind, timeframe: Timeframe | None, runtime: str, asset: Asset) -> Any:
    dataset = Dataset(kind, timeframe)
    table = dataset.table

    @task(task_id="summary", outlets=[asset])
    def summary(resolved: dict[str, Any], results: Any, **context: Any) -> dict[str, Any]:
        """Rows and freshness lag per symbol; fails if a symbol is older than one interval + grace."""
        resolution = orchestration.SymbolResolution.from_dict(resolved)
        results = list(results)
        last = None if runtime == "kubernetes" else orchestration.last_times_from_sinks(dataset, resolution.valid)
        if last is None:  # the pods read their own sinks: their results carry the newest stored key
            last = orchestration.last_times_from_results(results)
        report = orchestration.summarize(
            table,
            resolution.valid,
            orchestration.rows_per_symbol(results),
            last,
            reference=context["data_interval_end"],
            target=orchestration.freshness_target(kind, timeframe),
            skipped=resolution.invalid,
        )
        for line in report.lines():
            log.info("%s", line)
        try:
            report.raise_if_stale()
        except orchestration.StaleDataError as exc:
            raise fail(exc) from None
        return report.to_dict()

    return summary


# --------------------------------------------------------------------------------------------- scheduled DAGs


def _scheduled_dag(
    dag_id: str,
    kind: DataKind,
    cron: str,
    *,
    timeframe: Timeframe | None,
    doc_md: str | None,
    tags: list[str],
    runtime: str | None,
) -> DAG:
    runtime = runtime or config.runtime()
    table = kind.table(timeframe)
    asset = table_asset(table)
    # Freshness: a klines run still unfinished one candle interval after it started has stalled its timeframe;
    # the timeout fails it, so on_dag_failure reports it within one interval. (An Airflow 3 DeadlineAlert,
    # callbacks.freshness_deadline, does the same from the triggerer, but in Airflow 3.3.2 a DAG carrying one
    # breaks dag.test() when the run succeeds: DagRun.update_state reads the SDK alert as a database id.)
    timeout = timeframe.delta if timeframe else None
    with _dag(
        dag_id,
        CronDataIntervalTimetable(cron, timezone="UTC"),
        tags=tags,
        doc_md=doc_md,
        description=f"Binance USD-M {table} per symbol ({cron} UTC, {runtime} runtime)",
        dagrun_timeout=timeout,
        priority=orchestration.priority_weight(kind, timeframe),
        params={"symbols_per_task": Param(None, **orchestration.SYMBOLS_PER_TASK_SCHEMA)},
    ) as dag:

        @task(task_id="plan")
        def plan(resolved: Any, **context: Any) -> list[dict[str, Any]]:
            """One spec per symbol (or chunk of ``symbols_per_task``): incremental up to the interval end, or
            exactly the interval for backfills."""
            from binance_extractor.errors import InputError

            run_type = str(getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type))
            try:
                per_task = orchestration.symbols_per_task(
                    len(resolved["valid"]), (context.get("params") or {}).get("symbols_per_task")
                )
            except InputError as exc:
                raise fail(exc) from None
            specs = orchestration.plan_scheduled(
                kind,
                resolved["valid"],
                run_type=run_type,
                data_interval_start=context["data_interval_start"],
                data_interval_end=context["data_interval_end"],
                timeframe=timeframe,
                requested_by=requested_by(context),
                xcom=runtime == "kubernetes",
                symbols_per_task=per_task,
            )
            example = " ".join(specs[0].to_argv()) if specs else "-"
            log.info("%s run: %d task(s) of %d symbol(s), e.g. %s", run_type, len(specs), per_task, example)
            return [s.task_kwargs(pod=runtime == "kubernetes") for s in specs]

        resolved = symbols_task()
        extracted = _extraction(kind.command, dag_id, runtime, plan(resolved))
        _summary_task(kind, timeframe, runtime, asset)(resolved, extracted)
    return dag


def klines_dag(name: str, cron: str | None = None, *, doc_md: str | None = None, runtime: str | None = None) -> DAG:
    """``binance_klines_<name>``: one candle window per run (``CronDataIntervalTimetable``)."""
    tf = timeframes.parse(name)  # a DAG file or config.yaml names it: a boundary
    cron = cron or str(config.settings().timeframes[tf.name]["cron"])
    return _scheduled_dag(
        f"binance_klines_{tf.name}",
        DataKind.KLINES,
        cron,
        timeframe=tf,
        doc_md=doc_md,
        tags=["klines", tf.name],
        runtime=runtime,
    )


def klines_dags(doc_md: str | None = None, runtime: str | None = None) -> dict[str, DAG]:
    """Every timeframe listed under ``timeframes:`` in config.yaml."""
    dags = {}
    for name, spec in config.settings().timeframes.items():
        dag = klines_dag(name, str(spec["cron"]), doc_md=doc_md, runtime=runtime)
        dags[dag.dag_id] = dag
    return dags


def funding_dag(doc_md: str | None = None, runtime: str | None = None) -> DAG:
    """``binance_funding_rates``: hourly (contracts settle every 1, 4 or 8 hours)."""
    return _scheduled_dag("binance_funding_rates", DataKind.FUNDING, HOURLY, **_hourly(doc_md, "funding", runtime))


def trades_dag(doc_md: str | None = None, runtime: str | None = None) -> DAG:
    """``binance_trades``: aggregate trades, exactly each hour's data interval."""
    return _scheduled_dag("binance_trades", DataKind.AGG_TRADES, HOURLY, **_hourly(doc_md, "trades", runtime))


def derivative_dags(doc_md: str | None = None, runtime: str | None = None) -> dict[str, DAG]:
    """The series enabled under ``derivatives:`` in config.yaml (none by default): ``binance_<series>_<tf>`` for
    mark/index/premium-index klines on every scheduled timeframe, ``binance_open_interest`` every 5 minutes."""
    settings = config.settings()
    dags: dict[str, DAG] = {}
    for name in config.derivative_kinds():
        kind = DataKind(name)
        if not kind.entry.per_timeframe:
            cron = config.derivative_cron(name, "*/5 * * * *")
            dag = _scheduled_dag(f"binance_{name}", kind, cron, **_hourly(doc_md, name, runtime))
            dags[dag.dag_id] = dag
            continue
        for tf_name, spec in settings.timeframes.items():
            tf = timeframes.parse(tf_name)  # config.yaml names it: a boundary
            cron = config.derivative_cron(name, str(spec["cron"]))
            dag = _scheduled_dag(
                f"binance_{name}_{tf.name}",
                kind,
                cron,
                timeframe=tf,
                doc_md=doc_md,
                tags=[name, tf.name],
                runtime=runtime,
            )
            dags[dag.dag_id] = dag
    return dags


def _hourly(doc_md: str | None, tag: str, runtime: str | None) -> dict[str, Any]:
    return {"timeframe": None, "doc_md": doc_md, "tags": [tag], "runtime": runtime}


# --------------------------------------------------------------------------------------------- manual DAG


def max_map_length() -> int:
    try:
        from airflow.configuration import conf

        return conf.getint("core", "max_map_length", fallback=config.MAX_MAP_LENGTH)
    except Exception:  # a worker without airflow-core: the documented default
        return int(os.environ.get("AIRFLOW__CORE__MAX_MAP_LENGTH", config.MAX_MAP_LENGTH))


def manual_dag(doc_md: str | None = None, runtime: str | None = None) -> DAG:
    """``binance_klines_manual``: any interval, symbols and range from a validated form, in weekly chunks."""
    runtime = runtime or config.runtime()
    alias = AssetAlias(name=MANUAL_ALIAS)
    params = {
        key: Param(orchestration.MANUAL_DEFAULTS[key], **schema) for key, schema in orchestration.MANUAL_SCHEMA.items()
    }
    with _dag(
        "binance_klines_manual",
        None,
        tags=["klines", "manual"],
        doc_md=doc_md,
        description="Binance USD-M klines for any symbols, interval and range (weekly chunks)",
        max_active_runs=4,
        params=params,
    ) as dag:

        @task(task_id="validate_request", pool=POOL)
        def validate_request(**context: Any) -> dict[str, Any]:
            """Form values re-checked here (REST/CLI triggers skip the form); symbols checked on the exchange."""
            from binance_extractor.errors import InputError
            from binance_extractor.timeutil import iso

            try:
                request = orchestration.validate_manual(context["params"])
            except InputError as exc:
                raise fail(exc) from None
            resolved = _resolve(request.symbols, "params")
            return {
                **resolved,
                "interval": request.timeframe.interval,
                "table": DataKind.KLINES.table(request.timeframe),
                "start": iso(request.start),
                "end": iso(request.end),
                "sinks": request.sinks,
            }

        @task(task_id="plan")
        def plan(req: Any, **context: Any) -> list[dict[str, Any]]:
            """One spec per (symbol, weekly chunk), bounded by core.max_map_length."""
            from binance_extractor.errors import InputError
            from binance_extractor.timeutil import parse_time

            tf = timeframes.parse(req["interval"])  # read back from XCom
            request = orchestration.ManualRequest(
                req["valid"], tf, parse_time(req["start"]), parse_time(req["end"]), req["sinks"]
            )
            try:
                specs = orchestration.plan_manual(
                    request,
                    req["valid"],
                    max_tasks=max_map_length(),
                    requested_by=requested_by(context),
                    xcom=runtime == "kubernetes",
                )
            except InputError as exc:
                raise fail(exc) from None
            log.info("%d chunk task(s), e.g. %s", len(specs), " ".join(specs[0].to_argv()))
            return [s.task_kwargs(pod=runtime == "kubernetes") for s in specs]

        @task(task_id="summary", outlets=[alias])
        def summary(req: Any, results: Any, **context: Any) -> dict[str, Any]:
            """Rows per symbol; tells the table's asset that it changed."""
            table = str(req["table"])
            rows = orchestration.rows_per_symbol(list(results))
            for sym in req["valid"]:
                log.info("%s %s: %d rows in [%s, %s)", table, sym, rows.get(sym, 0), req["start"], req["end"])
            for sym, why in (req.get("invalid") or {}).items():
                log.info("%s skipped: %s", sym, why)
            context["outlet_events"][alias].add(table_asset(table), extra={"rows": sum(rows.values())})
            return {"table": table, "rows": rows, "skipped": req.get("invalid") or {}}

        req = validate_request()
        extracted = _extraction("klines", "binance_klines_manual", runtime, plan(req))
        summary(req, extracted)
    return dag


# --------------------------------------------------------------------------------------------- gap filler DAG

GAP_FILLER_ID = "binance_klines_gap_filler"
GAP_FILLER_CRON = "0 2 * * *"


def gap_filler_dag(doc_md: str | None = None, runtime: str | None = None) -> DAG:
    """``binance_klines_gap_filler``: detect -> chunk -> fill (mapped) -> verify -> report, daily 02:00 UTC."""
    from binance_extractor import gaps
    from binance_extractor.airflow import gap_tasks, gapfill

    runtime = runtime or config.runtime()
    with _dag(
        GAP_FILLER_ID,
        CronTriggerTimetable(GAP_FILLER_CRON, timezone="UTC"),
        tags=["gaps", "maintenance"],
        doc_md=doc_md,
        description=f"Detect, refill and verify holes in every table, daily 02:00 UTC ({runtime} runtime)",
    ) as dag:

        @task(task_id="detect", pool=POOL)  # fundingInfo: each contract's funding interval
        def detect(**context: Any) -> dict[str, Any]:
            """Holes per (table, symbol), found in the database; ledger-known exchange holes left out."""
            from binance_extractor.timeutil import iso

            end = context["data_interval_end"]
            scans = gapfill.scan(gapfill.symbols(), end, recheck=True)  # legacy ledger rows re-asked once
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
            cap = min(settings.max_mapped_tasks, max_map_length())  # a deployment may lower it
            settings = dataclasses.replace(settings, max_mapped_tasks=cap)
            holes = [gaps.Hole.from_dict(h) for h in found["holes"]]
            groups = gaps.plan_groups(holes, settings)
            by = requested_by(context)
            specs = [gap_tasks.fill_spec(g, requested_by=by, xcom=runtime == "kubernetes") for g in groups]
            log.info("%d hole(s) -> %d chunk(s) in %d task(s)", len(holes), sum(map(len, groups)), len(specs))
            return [s.task_kwargs(pod=runtime == "kubernetes") for s in specs]

        @task(task_id="verify", trigger_rule="all_done")
        def verify(specs: Any, **context: Any) -> dict[str, Any]:
            """Re-detect every chunk: a hole still open that is neither confirmed exchange-side nor "not fillable
            yet" (the evidence rule could not confirm it yet) fails the run."""
            chunks = gap_tasks.chunks_of_specs(specs)
            open_holes = gapfill.verify(chunks, gapfill.fill_results(context))
            if gaps.failures(open_holes):
                raise fail(gaps.GapClosureError(gaps.closure_message(open_holes)))
            waiting = [h for h in open_holes if h["status"] == gaps.NOT_FILLABLE_YET]
            log.info("all %d chunk(s) closed; %d hole(s) not fillable yet", len(chunks), len(waiting))
            return {"chunks": len(chunks), "open": [], "not_fillable_yet": waiting}

        @task(task_id="report", trigger_rule="all_done", pool=POOL)  # fundingInfo again, for the re-scan
        def report(found: Any, specs: Any, **context: Any) -> dict[str, Any]:
            """Found / filled / confirmed / remaining and completeness per table and symbol; log, XCom, metrics."""
            from binance_extractor.timeutil import parse_time

            results = gapfill.fill_results(context)
            chunks = gap_tasks.chunks_of_specs(specs)
            symbols = sorted({s["symbol"] for s in found["scans"]})
            after = gapfill.scan(symbols, parse_time(found["end"])) if symbols else []
            open_holes = gapfill.verify(chunks, results)
            out = gaps.report_run(found["scans"], results, after, open_holes)
            if gaps.failures(open_holes):
                context["ti"].xcom_push(key="report", value=out)
                raise fail(gaps.GapClosureError(gaps.closure_message(open_holes)))
            return out

        found = detect()
        specs = chunk(found)
        filled = _extraction("gaps", GAP_FILLER_ID, runtime, specs, task_id="fill", name="binance-gap-filler")
        verified = verify(specs)
        filled >> verified
        verified >> report(found, specs)
    return dag


MAINTENANCE_ID = "binance_maintenance"
MAINTENANCE_CRON = "0 3 * * *"


def maintenance_dag(doc_md: str | None = None) -> DAG:
    """``binance_maintenance``: retention on every configured sink, daily 03:00 UTC, in-process (it asks the
    exchange nothing, so no pool slot and no pod); the factory's retries, timeout and alerts like every family."""
    with _dag(
        MAINTENANCE_ID,
        CronTriggerTimetable(MAINTENANCE_CRON, timezone="UTC"),
        tags=["maintenance"],
        doc_md=doc_md,
        description="Retention: delete rows older than each table's configured age, daily 03:00 UTC",
    ) as dag:

        @task(task_id="retention")
        def retention() -> list[dict[str, Any]]:
            from binance_extractor import cli

            return cli.execute(["retention"])

        retention()
    return dag
