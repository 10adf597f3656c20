"""The catalog is the one source of every dataset's and store's facts: whatever an entry declares, the rest of the
library derives (table names read back, table specs, weights, the store a name opens), for every entry, so a new
dataset or store is covered by these tests the moment it is declared."""

from __future__ import annotations

import pytest

from binance_extractor import catalog, config, timeframes, weights
from binance_extractor.catalog import DATASETS, STORES, DataKind
from binance_extractor.errors import InputError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks import open_sink
from binance_extractor.sinks.base import Store
from binance_extractor.sinks.schema import spec_for

SOME_TIMEFRAMES = [timeframes.parse(i) for i in ("1m", "5m", "1h", "1d", "1w", "1M")]


@pytest.mark.parametrize("kind", list(DataKind))
def test_every_dataset_derives_its_tables_specs_and_weight(kind: DataKind) -> None:
    entry = DATASETS[kind]
    assert entry.kind is kind and entry.key == ("symbol", entry.order_column)
    names = {c.name for c in entry.columns}
    assert {"symbol", entry.time_column, entry.order_column} <= names
    assert names <= set(entry.model.model_fields)  # the writers read each column off the model
    for tf in SOME_TIMEFRAMES if entry.per_timeframe else [None]:
        dataset = Dataset(kind, tf)
        table = dataset.table
        assert catalog.dataset_of_table(table) == (kind, tf)  # the name reads back to the same dataset
        assert Dataset.of_table(table) == Dataset.parse(table) == dataset
        spec = spec_for(table)
        assert (spec.name, spec.columns, spec.key, spec.time_column) == (
            table,
            entry.columns,
            entry.key,
            entry.time_column,
        )
    assert weights.weight(entry.endpoint, {}) == entry.weight({}) >= 0  # /futures/data weighs 0


def test_table_names_are_read_in_one_place_and_refuse_what_is_not_data() -> None:
    for name in ("gap_ledger", "extraction_runs", "schema_migrations"):
        with pytest.raises(InputError, match="not a market data table"):
            catalog.dataset_of_table(name)
    for name in ("klines_x9", "klines_", "klines", "candles", "klines_5m"):  # 5m is how users write it, not a table
        with pytest.raises(InputError, match="unknown table"):
            catalog.dataset_of_table(name)
    tables = [e.table_name(SOME_TIMEFRAMES[0]) for e in DATASETS.values()]
    assert len(set(tables)) == len(tables)  # no two datasets share a table


def test_every_store_is_one_entry_that_config_and_open_sink_follow(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BINANCE_EXTRACTOR_DATA_DIR", str(tmp_path))
    assert tuple(config.sink_names(",".join(STORES))) == catalog.SINK_NAMES == tuple(STORES)
    assert "postgres" in catalog.STORE_NAMES and "jsonl" not in catalog.STORE_NAMES
    assert "PostgreSQL" in catalog.store_titles()
    for name, entry in STORES.items():
        sink = open_sink(name, str(tmp_path / "out.jsonl") if name == "jsonl" else None)  # not connected yet
        try:
            assert sink.name == name and isinstance(sink, Store) == entry.reads_back
        finally:
            if name in ("sqlite", "jsonl"):
                sink.close()
    with pytest.raises(InputError, match="unknown sink 'oracle': use one of sqlite, mysql, postgres, mongo, jsonl"):
        open_sink("oracle")


def test_no_library_module_branches_on_a_particular_data_kind() -> None:
    """Issue #26: what differs by dataset is a fact of its catalog entry (shape, grid, period, incremental,
    gap_filled, rest_days, command_args) or a row of ``sources._READERS``; code asks those, never ``kind is
    DataKind.FUNDING``. Adding a dataset then adds an entry, not branches across modules."""
    import re
    from pathlib import Path

    import binance_extractor

    root = Path(binance_extractor.__file__).parent
    branch = re.compile(r"\b(?:kind|\.kind)\s+(?:is not|is|==|!=|not in|in)\s+\(?DataKind\.[A-Z_]+")
    found = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if branch.search(line)
    ]
    assert found == [], "\n".join(found)


def test_every_dataset_declares_what_its_rules_need() -> None:
    """A dataset without a grid declares how often its rows are due; a per-timeframe series has no fixed grid; an
    id-keyed or log dataset is not on a grid; every scheduled dataset has a reader (``sources``)."""
    from binance_extractor import sources
    from binance_extractor.catalog import DATASETS, Shape

    for kind, entry in DATASETS.items():
        if entry.per_timeframe:
            assert entry.grid is None and entry.shape is Shape.GRID, kind
        elif entry.grid is None:
            assert entry.period is not None and entry.shape is not Shape.GRID, kind
        else:
            assert entry.shape is Shape.GRID, kind
        assert entry.per_timeframe or kind in sources._READERS, kind
        assert len(entry.command_args) % 2 == 0, kind
