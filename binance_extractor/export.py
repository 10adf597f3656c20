"""File exports of stored data: Parquet (exact ``decimal128``) or CSV (the exact decimal text), streamed.

Batches come from ``reader.iter_batches`` (one bounded time window at a time), so memory stays bounded for
any range. A Parquet file names its table in the schema metadata and carries, next to each ``decimal128(38, 18)``
column, an ``int8`` column ``_scale_<column>`` with each value's stored number of places, so ``import`` restores
the stored text (``0.10`` stays ``0.10``, not ``0.100000000000000000``) on stores that keep it (SQLite, PostgreSQL).
Each file is written under a temporary name and renamed when complete: an interrupted export never
leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from binance_extractor import reader
from binance_extractor.errors import InputError
from binance_extractor.sinks.base import Store
from binance_extractor.sinks.schema import spec_for
from binance_extractor.timeutil import iso

FORMATS = ("parquet", "csv")
TABLE_KEY = b"binance_extractor.table"  # Parquet schema metadata: the table the file holds
SCALE_PREFIX = "_scale_"  # int8 column beside each decimal column: the value's places as stored


def scale_columns(table: str) -> list[str]:
    """The decimal columns of ``table``, whose places a Parquet export keeps in ``_scale_<column>``."""
    return [c.name for c in spec_for(table).columns if c.type == "dec"]


def parquet_schema(table: str) -> Any:
    """The export's Parquet schema: the table's Arrow schema, the scale columns, the table name as metadata."""
    import pyarrow as pa

    schema = reader.arrow_schema(table)
    for name in scale_columns(table):
        schema = schema.append(pa.field(SCALE_PREFIX + name, pa.int8(), nullable=True))
    return schema.with_metadata({TABLE_KEY: table.encode()})


def _places(value: Decimal | None) -> int | None:
    """Places of a stored decimal (``0.10`` -> 2; ``1E+2`` -> 0)."""
    if value is None:
        return None
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def to_parquet_table(table: str, rows: list[dict[str, Any]]) -> Any:
    """Rows -> the export's Arrow table (exact decimals plus their places)."""
    import pyarrow as pa

    data = reader.to_arrow(table, rows)
    for name in scale_columns(table):
        places = pa.array([_places(r.get(name)) for r in rows], pa.int8())
        data = data.append_column(pa.field(SCALE_PREFIX + name, pa.int8(), nullable=True), places)
    return data.replace_schema_metadata({TABLE_KEY: table.encode()})


@dataclass
class ExportResult:
    """One file written."""

    path: str
    table: str
    rows: int
    symbols: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "table": self.table, "rows": self.rows, "symbols": self.symbols}


class _Writer:
    """One output file, written to ``<name>.part`` and renamed on ``commit``."""

    def __init__(self, path: Path, table: str, fmt: str) -> None:
        self.path = path
        self.table = table
        self.fmt = fmt
        self.rows = 0
        self.symbols: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(path.name + ".part")
        self._columns = spec_for(table).column_names
        self._pq: Any = None
        self._fh: Any = None
        self._csv: Any = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self._pq = pq.ParquetWriter(self.tmp, parquet_schema(table), compression="zstd")
        else:
            self._fh = open(self.tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed in commit/abort)
            self._csv = csv.writer(self._fh)
            self._csv.writerow(self._columns)

    def write(self, batch: reader.Batch) -> None:
        if batch.symbol not in self.symbols:
            self.symbols.append(batch.symbol)
        if self._pq is not None:
            self._pq.write_table(to_parquet_table(self.table, batch.rows))
        else:
            self._csv.writerows([_csv_value(r.get(c)) for c in self._columns] for r in batch.rows)
        self.rows += len(batch.rows)

    def commit(self) -> ExportResult:
        self._close()
        os.replace(self.tmp, self.path)
        return ExportResult(str(self.path), self.table, self.rows, self.symbols)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

    def _close(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _csv_value(value: Any) -> Any:
    """CSV text: decimals as the stored digits (never a float), times as ISO 8601 UTC with ``Z``."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def split_path(root: Path, table: str, symbol: str, month: datetime, fmt: str) -> Path:
    """``ROOT/<table>/<symbol>/<YYYY-MM>.<fmt>``: one file per symbol and month."""
    return root / table / symbol / f"{month:%Y-%m}.{fmt}"


def export(
    sink: Store,
    table: str,
    output: str | Path,
    *,
    symbols: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    fmt: str = "parquet",
    split: bool = False,
    batch_rows: int = reader.DEFAULT_BATCH_ROWS,
) -> list[ExportResult]:
    """Write ``table`` rows in ``[start, end)`` to ``output`` (a file; with ``split`` a directory of
    ``<table>/<symbol>/<YYYY-MM>.<fmt>`` files). Returns the files written."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: use parquet or csv")
    table = reader.resolve_table(table)
    root = Path(output)
    if not split and root.is_dir():
        raise InputError(f"--output {output} is a directory: give a file name, or use --split")
    results: list[ExportResult] = []
    current: _Writer | None = None
    batches: Iterator[reader.Batch] = reader.iter_batches(
        sink, table, symbols, start, end, batch_rows=batch_rows, split_months=split
    )
    try:
        if not split:
            current = _Writer(root, table, fmt)
        for batch in batches:
            if split:
                path = split_path(root, table, batch.symbol, reader.month_start(batch.start), fmt)
                if current is None or current.path != path:
                    if current is not None:
                        results.append(current.commit())
                    current = _Writer(path, table, fmt)
            assert current is not None
            current.write(batch)
        if current is not None:
            results.append(current.commit())
            current = None
    except BaseException:
        if current is not None:
            current.abort()
        raise
    return results
