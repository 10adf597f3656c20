"""JSON Lines sink: one object per line (decimals as strings, ISO times), to a file or stdout (``-``).

For piping into other tools and for inspection; it appends and has no key index, so ``last_time`` is
None (every run starts from its own range) and re-runs append again. Reads parse the file back and keep
the last line per key, which is what an upserting store would hold.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from binance_extractor.errors import SinkError
from binance_extractor.sinks.base import Row, RunRecord, Sink, check_rows, model_for, utc_ms
from binance_extractor.sinks.schema import spec_for
from binance_extractor.timeutil import parse_time


class JsonlSink(Sink):
    name = "jsonl"

    def __init__(self, path: str | Path = "-") -> None:
        self.path = str(path)
        self._runs: list[RunRecord] = []
        self._gaps: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}

    def ensure_schema(self) -> None:
        if self.path != "-":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    def write(self, table: str, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        check_rows(table, rows)
        prefix = '{"table":' + json.dumps(table) + ","
        text = "".join(prefix + r.model_dump_json()[1:] + "\n" for r in rows)  # build first: all or nothing
        try:
            if self.path == "-":
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(text)
        except OSError as exc:
            raise SinkError(f"jsonl sink ({self.path}): {exc.strerror or exc}") from None
        return len(rows)

    def _rows(self, table: str, symbol: str | None, start: datetime | None, end: datetime | None) -> list[Any]:
        if self.path == "-" or not Path(self.path).exists():
            return []
        spec = spec_for(table)
        model = model_for(table)
        tcol = spec.time_column or spec.order_column
        lo, hi = utc_ms(start), utc_ms(end)
        times = [c.name for c in spec.columns if c.type == "time"]
        latest: dict[tuple[Any, ...], Any] = {}
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                obj = json.loads(line)
                if obj.pop("table", None) != table or (symbol is not None and obj.get("symbol") != symbol):
                    continue
                for col in times:
                    if obj.get(col) is not None:
                        obj[col] = parse_time(obj[col])
                row = model(**obj)
                t = getattr(row, tcol)
                if (lo is not None and t < lo) or (hi is not None and t >= hi):
                    continue
                latest[row.key()] = row
        return sorted(latest.values(), key=lambda r: getattr(r, spec.order_column))

    def last_time(self, table: str, symbol: str) -> datetime | None:
        return None

    def first_time(self, table: str, symbol: str) -> datetime | None:
        return None

    def count(
        self, table: str, symbol: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> int:
        return len(self._rows(table, symbol, start, end))

    def read(
        self, table: str, symbol: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        return [r.model_dump() for r in self._rows(table, symbol, start, end)]

    def record_run(self, run: RunRecord) -> None:
        self._runs = [r for r in self._runs if r.run_id != run.run_id] + [run]

    def runs(self, limit: int = 100) -> list[RunRecord]:
        return sorted(self._runs, key=lambda r: r.started_at, reverse=True)[:limit]

    def record_gap(
        self,
        table: str,
        symbol: str,
        gap_start: datetime,
        gap_end: datetime,
        checked_by: str,
        method: str,
        requests: int,
        confirmed_at: datetime | None = None,
    ) -> None:
        gaps = self._gaps.setdefault((table, symbol), [])
        gaps[:] = sorted({*gaps, (gap_start, gap_end)})

    def known_gaps(self, table: str, symbol: str) -> list[tuple[datetime, datetime]]:
        return list(self._gaps.get((table, symbol), []))

    def delete_before(self, table: str, cutoff: datetime, limit: int = 10_000) -> int:
        return 0  # an append-only export: retention does not apply

    def close(self) -> None:
        return None
