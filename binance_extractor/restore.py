"""Restore what ``export`` wrote (Parquet or CSV, one file or a ``--split`` tree) into a store, exactly.

Why two passes: every file is read and validated in full (schema, types, the models' rules) before the first row
is written, so a missing, foreign or corrupt file fails the whole restore with nothing written. The second pass
writes through the stores' upserts (klines: the bulk loaders), so restoring twice changes nothing.

Exactness: Parquet keeps each decimal's places in ``_scale_<column>`` (``export.SCALE_PREFIX``), CSV keeps the
digits as text, so the restored table holds the same text a store had (files from before the scale columns
restore the same values with 18 places). Times are milliseconds in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from binance_extractor import export, store_rows
from binance_extractor.errors import InputError, ValidationError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Sink, is_data_table
from binance_extractor.sinks.schema import TableSpec, spec_for
from binance_extractor.symbols import is_symbol

DEFAULT_BATCH_ROWS = 50_000
SUFFIXES = {".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class InputFile:
    """One export file and the table it holds."""

    path: Path
    table: str
    fmt: str

    @property
    def dataset(self) -> Dataset:
        return Dataset.of_table(self.table)


@dataclass
class RestoreResult:
    path: str
    table: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "table": self.table, "rows": self.rows}


def find_inputs(path: str | Path, table: str | None = None) -> list[InputFile]:
    """The export files at ``path`` (a file, or a directory searched recursively) with the table of each.

    A file's table comes from its Parquet metadata, else from a ``--split`` tree (``<table>/<symbol>/<month>``),
    else from ``table``; a file that says it holds another table than ``table`` is an error."""
    root = Path(path)
    wanted = None if table is None else Dataset.parse(table).table
    if not root.exists():
        raise InputError(f"--input {path}: no such file or directory")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise InputError(f"--input {path}: no .parquet or .csv file in it")
    else:
        if root.suffix not in SUFFIXES:
            raise InputError(f"--input {path}: not a .parquet or .csv file")
        files = [root]
    out = []
    for f in files:
        fmt = SUFFIXES[f.suffix]
        found = _stated_table(f, fmt)
        if found is not None and wanted is not None and found != wanted:
            raise InputError(f"{f} holds {found}, not {wanted}")
        chosen = found or wanted
        if chosen is None:
            raise InputError(f"cannot tell which table {f} holds: give --table")
        out.append(InputFile(f, chosen, fmt))
    return out


def _stated_table(path: Path, fmt: str) -> str | None:
    """The table a file says it holds: Parquet metadata, else its place in a split tree, else None."""
    if fmt == "parquet":
        meta = _parquet(path).schema_arrow.metadata or {}
        if export.TABLE_KEY in meta:
            name = meta[export.TABLE_KEY].decode(errors="replace")
            if not is_data_table(name):
                raise InputError(f"{path} names an unknown table {name!r}")
            return name
    parts = path.parts
    if len(parts) >= 3 and is_data_table(parts[-3]) and is_symbol(parts[-2]):
        return parts[-3]
    return None


def _parquet(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]


# ---- reading files into row dicts ---------------------------------------------------------------------------
def iter_rows(f: InputFile, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[list[dict[str, Any]]]:
    """Row dicts of one file, ``batch_rows`` at a time: decimals as exact text, times aware UTC."""
    import pyarrow as pa

    spec = spec_for(f.table)
    try:
        if f.fmt == "parquet":
            yield from _parquet_rows(f.path, spec, batch_rows)
        else:
            yield from _csv_rows(f.path, spec, batch_rows)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{f.path}: unreadable ({_one_line(exc)})") from None


def _check_columns(path: Path, spec: TableSpec, names: list[str], extra_ok: set[str]) -> None:
    missing = [c for c in spec.column_names if c not in names]
    unknown = [n for n in names if n not in spec.column_names and n not in extra_ok]
    if missing or unknown:
        what = f"lacks {', '.join(missing)}" if missing else f"has columns {', '.join(unknown)} that {spec.name} lacks"
        raise InputError(f"{path} is not an export of {spec.name}: it {what}")


def _parquet_rows(path: Path, spec: TableSpec, batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    import pyarrow as pa

    pf = _parquet(path)
    schema = pf.schema_arrow
    scales = {export.SCALE_PREFIX + c for c in export.scale_columns(spec.name)}
    _check_columns(path, spec, schema.names, scales)
    expected = {
        "time": pa.types.is_timestamp,
        "dec": pa.types.is_decimal,
        "int": pa.types.is_integer,
        "bool": pa.types.is_boolean,
    }
    for c in spec.columns:
        check = expected.get(c.type, pa.types.is_string)
        if not (check(schema.field(c.name).type) or pa.types.is_large_string(schema.field(c.name).type)):
            raise InputError(f"{path}: column {c.name} is {schema.field(c.name).type}, not a {c.type} column")
    decimals = [c.name for c in spec.columns if c.type == "dec"]
    with_scale = [n for n in decimals if export.SCALE_PREFIX + n in schema.names]
    for batch in pf.iter_batches(batch_size=batch_rows):
        rows = batch.to_pylist()
        for r in rows:
            for name in decimals:
                value = r[name]
                if value is not None:
                    places = r.pop(export.SCALE_PREFIX + name) if name in with_scale else None
                    r[name] = _text(value, places, path, name)
        yield rows


def _text(value: Decimal, places: int | None, path: Path, column: str) -> str:
    """The stored text of a Parquet decimal: its digits cut back to the places the export recorded."""
    text = format(value, "f")
    exponent = value.as_tuple().exponent
    have = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if places is None or places == have:
        return text
    if places > have or places < 0:
        raise InputError(f"{path}: {column} records {places} places for {text}")
    cut = have - places
    if text[-cut:].strip("0"):
        raise InputError(f"{path}: {column} value {text} has more than the {places} places recorded for it")
    text = text[:-cut]
    return text[:-1] if text.endswith(".") else text


def _csv_rows(path: Path, spec: TableSpec, batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    with path.open("rb") as fh:
        header = fh.readline().decode("utf-8", errors="replace").strip().split(",")
    _check_columns(path, spec, header, set())
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=max(1 << 20, batch_rows * 200)),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in header}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    types = {c.name: c.type for c in spec.columns}
    for batch in reader:
        table = pa.Table.from_batches([batch])
        columns: dict[str, Any] = {}
        for name in spec.column_names:
            col = table[name]
            col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
            kind = types[name]
            try:
                if kind == "dec":  # a number every store holds exactly (MySQL: 18 places); the text is kept
                    pc.cast(col, pa.decimal128(38, 18))
                elif kind == "time":
                    col = pc.cast(col, pa.timestamp("ms", tz="UTC"))
                elif kind == "int":
                    col = pc.cast(col, pa.int64())
                elif kind == "bool":
                    if not pc.all(pc.is_in(pc.drop_null(col), pa.array(["true", "false"]))).as_py():
                        raise InputError(f"{path}: {name} holds a value other than true/false")
                    col = pc.equal(col, "true")
            except pa.ArrowInvalid as exc:
                raise InputError(f"{path}: column {name}: {_one_line(exc)}") from None
            columns[name] = col
        yield pa.table(columns).to_pylist()


# ---- restore ---------------------------------------------------------------------------------------------------
def _prepared(f: InputFile, rows: list[dict[str, Any]]) -> list[store_rows.Prepared]:
    try:
        return store_rows.prepare(f.dataset, rows)
    except ValidationError as exc:
        raise InputError(f"{f.path} does not hold valid {f.table} rows: {exc}") from None


def restore(
    sink: Sink, path: str | Path, table: str | None = None, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> list[RestoreResult]:
    """Upsert every row of the export files at ``path`` into ``sink``; returns one result per file.

    Nothing is written unless every file reads and validates."""
    if batch_rows < 1:
        raise InputError("--batch-rows must be at least 1")
    inputs = find_inputs(path, table)
    for f in inputs:  # pass 1: everything must read and validate
        for rows in iter_rows(f, batch_rows):
            _prepared(f, rows)
    results = []
    for f in inputs:  # pass 2: write, one transaction per block / batch
        written = 0
        for rows in iter_rows(f, batch_rows):
            written += store_rows.write(sink, f.dataset, _prepared(f, rows))
        results.append(RestoreResult(str(f.path), f.table, written))
    return results
