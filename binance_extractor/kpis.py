"""The project's three KPIs and their targets, judged from the health rows the data-health page already read.

Why here: the targets are the seed's (completeness 99.95 %, freshness under 5 minutes, job success 99 %) and the
Prometheus recording rules (deploy/prometheus/binance-recording.rules.yml) use the same numbers; this module is
the store-side view of them, with no query of its own.

- **Completeness**: stored / expected rows over the page's window, all (table, symbol) together; the worst is named.
- **Freshness** (klines): how long ago the first candle missing after the newest stored one closed (0 when every
  closed candle is stored); the worst (table, symbol) counts.
- **Job success**: successful extraction runs among the last runs of every (table, symbol) shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from binance_extractor import clock
from binance_extractor.kinds import Dataset, has_candles
from binance_extractor.timeutil import dt_to_ms, parse_time

COMPLETENESS_TARGET = 0.9995
FRESHNESS_TARGET_S = 300.0
JOB_SUCCESS_TARGET = 0.99


@dataclass(frozen=True)
class Kpi:
    """One KPI against its target; ``value`` None when there is nothing to judge yet."""

    name: str
    value: float | None
    target: float
    unit: str  # "ratio" or "seconds"
    higher_is_better: bool
    detail: str

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value < self.target

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "target": self.target,
            "unit": self.unit,
            "met": self.met,
            "detail": self.detail,
        }


def overdue_seconds(table: str, last: Any, now_ms: int) -> float | None:
    """Klines: seconds since the first candle missing after ``last`` closed (0 if it has not closed yet)."""
    tf = Dataset.parse(table).timeframe
    if tf is None or last is None:
        return None
    first_missing_open = tf.next_open_ms(dt_to_ms(parse_time(last) if isinstance(last, str) else last))
    closed_at = tf.next_open_ms(first_missing_open)
    return max(0, now_ms - closed_at) / 1000


def evaluate(rows: Sequence[Mapping[str, Any]], now_ms: int | None = None) -> list[Kpi]:
    """The three KPIs over health rows (``SymbolHealth.to_dict()``)."""
    now = clock.now_ms() if now_ms is None else now_ms
    return [_completeness(rows), _freshness(rows, now), _job_success(rows)]


def _name(row: Mapping[str, Any]) -> str:
    return f"{row['table']} {row['symbol']}"


def _completeness(rows: Sequence[Mapping[str, Any]]) -> Kpi:
    judged = [r for r in rows if r.get("expected")]
    if not judged:
        return Kpi("completeness", None, COMPLETENESS_TARGET, "ratio", True, "nothing expected in the window")
    stored = sum(min(int(r["stored"]), int(r["expected"])) for r in judged)
    expected = sum(int(r["expected"]) for r in judged)
    worst = min(judged, key=lambda r: min(1.0, int(r["stored"]) / int(r["expected"])))
    detail = f"{stored} of {expected} rows; worst {_name(worst)} {worst['stored']} / {worst['expected']}"
    return Kpi("completeness", stored / expected, COMPLETENESS_TARGET, "ratio", True, detail)


def _freshness(rows: Sequence[Mapping[str, Any]], now_ms: int) -> Kpi:
    overdue = [
        (seconds, r)
        for r in rows
        if has_candles(r["table"]) and (seconds := overdue_seconds(r["table"], r.get("last"), now_ms)) is not None
    ]
    if not overdue:
        return Kpi("freshness", None, FRESHNESS_TARGET_S, "seconds", False, "no klines stored")
    seconds, worst = max(overdue, key=lambda item: item[0])
    late = sum(1 for s, _ in overdue if s >= FRESHNESS_TARGET_S)
    detail = f"worst {_name(worst)}; {late} of {len(overdue)} klines series at or past the target"
    return Kpi("freshness", seconds, FRESHNESS_TARGET_S, "seconds", False, detail)


def _job_success(rows: Sequence[Mapping[str, Any]]) -> Kpi:
    runs = [run for r in rows for run in r.get("runs", [])]
    if not runs:
        return Kpi("job success", None, JOB_SUCCESS_TARGET, "ratio", True, "no runs recorded")
    ok = sum(1 for run in runs if run.get("outcome") == "success")
    detail = f"{ok} of the last {len(runs)} runs shown succeeded"
    return Kpi("job success", ok / len(runs), JOB_SUCCESS_TARGET, "ratio", True, detail)
