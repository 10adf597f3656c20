"""Typed job specs: what one mapped task runs, planned once and turned into argv once.

Why: DAG planning used to hand argv lists around, and three places parsed them back to find a symbol, a range
or the gap chunks. A spec keeps those as fields; ``to_argv()`` is the only way to its command line (pods get
it as ``arguments``, local tasks pass it to ``cli.execute``), ``label`` names the mapped task in the UI and
``to_dict()`` travels through XCom with it (``task_kwargs``), so callbacks and downstream tasks read fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from binance_extractor import config, timeframes
from binance_extractor.catalog import price_of
from binance_extractor.errors import InputError
from binance_extractor.kinds import SCHEDULED_KINDS, DataKind, command_kind
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import iso, parse_time

XCOM_FILE = "/airflow/xcom/return.json"
# Every argv names the exchange connection: the hook reads it (metadata DB, secrets backend or, in pods,
# AIRFLOW_CONN_BINANCE_DEFAULT) and falls back to the environment when it does not exist.
BINANCE_CONN_ID = "binance_default"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class Output:
    """The argv tail every data command shares: sinks, their connections, the exchange connection, the audit
    label, the pod's XCom file (``xcom``: kubernetes only, so the pod's results reach XCom)."""

    sinks: tuple[str, ...] = ()
    conn_ids: tuple[tuple[str, str], ...] = ()
    requested_by: str | None = None
    xcom: bool = False
    binance_conn_id: str | None = BINANCE_CONN_ID

    @classmethod
    def of(
        cls,
        sinks: Sequence[str] | None = None,
        conn_ids: Mapping[str, str] | None = None,
        requested_by: str | None = None,
        xcom: bool = False,
    ) -> Output:
        return cls(tuple(sinks or ()), tuple(sorted((conn_ids or {}).items())), requested_by, xcom)

    def to_argv(self) -> list[str]:
        argv: list[str] = []
        if self.sinks:
            argv += ["--sink", ",".join(config.sink_names(",".join(self.sinks)))]
        for sink, conn_id in self.conn_ids:
            argv += ["--conn-id", f"{sink}={conn_id}"]
        if self.binance_conn_id:
            argv += ["--binance-conn-id", self.binance_conn_id]
        if self.requested_by:
            argv += ["--requested-by", self.requested_by]
        if self.xcom:
            argv += ["--xcom-file", XCOM_FILE]
        return argv

    def to_dict(self) -> dict[str, Any]:
        return {
            "sinks": list(self.sinks),
            "conn_ids": dict(self.conn_ids),
            "requested_by": self.requested_by,
            "xcom": self.xcom,
            "binance_conn_id": self.binance_conn_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Output:
        out = cls.of(data.get("sinks"), data.get("conn_ids"), data.get("requested_by"), bool(data.get("xcom")))
        return cls(out.sinks, out.conn_ids, out.requested_by, out.xcom, data.get("binance_conn_id", BINANCE_CONN_ID))


def task_kwargs(argv: list[str], label: str, spec: Mapping[str, Any], *, pod: bool) -> dict[str, Any]:
    """One mapped task's keyword arguments (``expand_kwargs``): a pod's ``arguments`` or a local task's ``argv``,
    its UI label and the spec's fields."""
    return {"arguments" if pod else "argv": argv, "map_label": label, "spec": dict(spec)}


LABEL_CHARS = 200  # Airflow's rendered_map_index column holds 250 characters


def symbols_label(symbols: Sequence[str]) -> str:
    """``BTCUSDT`` / ``BTCUSDT,ETHUSDT`` / ``BTCUSDT..SOLUSDT (40)`` when the list does not fit the UI column."""
    joined = ",".join(symbols)
    if len(joined) <= LABEL_CHARS:
        return joined
    return f"{symbols[0]}..{symbols[-1]} ({len(symbols)})"


@dataclass(frozen=True)
class ExtractionSpec:
    """One symbol's klines, funding or aggregate-trades run over ``[start, end)`` (or incremental up to ``end``);
    ``more_symbols``: the rest of a chunk when a task carries several symbols (``symbols_per_task``, #25)."""

    kind: DataKind
    symbol: str
    end: datetime
    start: datetime | None = None
    timeframe: Timeframe | None = None
    incremental: bool = False
    output: Output = field(default_factory=Output)
    more_symbols: tuple[str, ...] = ()

    @property
    def symbols(self) -> tuple[str, ...]:
        return (self.symbol, *self.more_symbols)

    def __post_init__(self) -> None:
        object.__setattr__(self, "more_symbols", tuple(self.more_symbols))
        object.__setattr__(self, "kind", DataKind.parse(self.kind))
        if self.kind not in SCHEDULED_KINDS:
            names = ", ".join(k.value for k in SCHEDULED_KINDS)
            raise InputError(f"no extraction spec for {self.kind.value}: use one of {names}")
        if self.kind.entry.per_timeframe and self.timeframe is None:
            raise InputError(f"{self.kind.value} need an interval")
        if not self.kind.entry.per_timeframe:
            object.__setattr__(self, "timeframe", None)
        self.output.to_argv()  # unknown sinks are bad input at planning time

    def to_argv(self) -> list[str]:
        """THE argv of ``python -m binance_extractor`` for this task: pods and local tasks run the same."""
        argv = [self.kind.command, *self.kind.entry.command_args]  # e.g. klines --price mark, trades --kind agg
        if self.timeframe is not None:
            argv += ["--interval", self.timeframe.interval]
        argv += ["--symbols", ",".join(self.symbols)]
        if self.start is not None:
            argv += ["--start", iso(_utc(self.start))]
        argv += ["--end", iso(_utc(self.end))]
        if self.incremental:
            argv.append("--incremental")
        if self.more_symbols:  # a chunk: one bad symbol does not stop the rest; a retry redoes only the failed
            argv += ["--keep-going", "--skip-succeeded"]
        return argv + self.output.to_argv()

    @property
    def label(self) -> str:
        """UI label (``map_index_template``): the symbol(s), plus the range when the task has a fixed one."""
        names = symbols_label(self.symbols)
        if self.incremental or self.start is None:
            return names
        return f"{names} {iso(_utc(self.start))[:16]}..{iso(_utc(self.end))[:16]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.command,  # the DAG family, as in argv
            "price": price_of(self.kind).value if self.kind.entry.per_timeframe else None,
            "symbol": self.symbol,
            "symbols": list(self.symbols),
            "start": None if self.start is None else iso(_utc(self.start)),
            "end": iso(_utc(self.end)),
            "interval": self.timeframe.interval if self.timeframe else None,
            "incremental": self.incremental,
            "output": self.output.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExtractionSpec:
        interval = data.get("interval")
        kind = command_kind(str(data["kind"]), {"--price": data.get("price")})
        return cls(
            kind=kind,
            symbol=str(data["symbol"]),
            end=parse_time(str(data["end"])),
            start=None if data.get("start") is None else parse_time(str(data["start"])),
            timeframe=timeframes.parse(str(interval)) if interval else None,  # XCom: a boundary
            incremental=bool(data.get("incremental")),
            output=Output.from_dict(data.get("output") or {}),
            more_symbols=tuple(str(s) for s in (data.get("symbols") or [])[1:]),
        )

    def task_kwargs(self, *, pod: bool) -> dict[str, Any]:
        return task_kwargs(self.to_argv(), self.label, self.to_dict(), pod=pod)
