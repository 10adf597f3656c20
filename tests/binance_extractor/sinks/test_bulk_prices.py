"""The archive bulk path of the mark/index/premium-index klines, into every real store: archive files load as
columnar blocks (LOAD DATA / COPY / executemany / bulk upserts), and the table is byte for byte what the REST path
writes; re-runs change nothing; a file whose checksum does not match is refused and nothing of it is written.

Emulator and library share one fixed clock (2025-03-10 12:34:56.789 UTC): a monthly file for 2025-01
(microsecond times, header) and daily files around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from binance_extractor import archive, clock, timeframes
from binance_extractor.catalog import PRICE_KINDS
from binance_extractor.derivative_models import PRICE_MODELS
from binance_extractor.kinds import Dataset
from binance_extractor.pipeline import Job, run_job
from binance_extractor.prices import Price
from binance_extractor.timeutil import dt_to_ms, parse_time
from tests.binance_extractor.sinks.conftest import SINK_KINDS, new_sink
from tests.emulator import Emulator
from tests.emulator import datasets as DS

NOW = dt_to_ms(parse_time("2025-03-10T12:34:56.789Z"))
SYMBOL = "BTCUSDT"
M5 = timeframes.parse("5m")
FAR = datetime(2100, 1, 1, tzinfo=UTC)
DAY = 86_400_000


@pytest.fixture
def fixed() -> Iterator[clock.FixedClock]:
    clk = clock.FixedClock(NOW)
    with clock.using(clk):
        yield clk


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator], fixed: clock.FixedClock) -> Emulator:
    return make_emulator(clock=fixed)


def span(kind: str) -> tuple[datetime, datetime]:
    """Daily files, the monthly 2025-01 file (header, us), daily files; Mongo's wire server is slow: daily only."""
    if kind == "mongo":
        return parse_time("2025-02-26T00:00:00Z"), parse_time("2025-02-28T00:00:00Z")
    return parse_time("2024-12-30T00:00:00Z"), parse_time("2025-02-03T00:00:00Z")


def job(price: Price, start: datetime, end: datetime, source: str) -> Job:
    return Job(PRICE_KINDS[price], SYMBOL, M5, start, end, source=source)


def expected(emu: Emulator, price: Price, start: datetime, end: datetime) -> list[Any]:
    rows = DS.price_rows(emu, price.value, SYMBOL, "5m", dt_to_ms(start), dt_to_ms(end) - 1)
    return [PRICE_MODELS[price].from_rest(price.subject(SYMBOL), "5m", r) for r in rows]


def stored(sink: Any, price: Price) -> tuple[list[dict[str, Any]], Any]:
    """The table as rows and as its stored text (decimals as the store keeps them, times in epoch ms)."""
    table = Dataset(PRICE_KINDS[price], M5)
    subject = price.subject(SYMBOL)
    return list(sink.read(table, subject)), sink.read_columns(table, subject)


def test_price_klines_bulk_load_equals_the_rest_path(store: tuple[str, str], emu: Emulator, client: Any) -> None:
    kind, conn_id = store
    start, end = span(kind)
    prices = [Price.MARK, Price.INDEX, Price.PREMIUM] if kind in ("mysql", "postgres") else [Price.PREMIUM]
    sink = new_sink(kind, conn_id)
    try:
        sink.ensure_schema()
        for price in prices:
            table = Dataset(PRICE_KINDS[price], M5)
            blocks = [
                b
                for b in archive.iter_klines(
                    None, SYMBOL, M5, dt_to_ms(start), dt_to_ms(end), source="archive", now_ms=NOW,
                    base_url=emu.archive_url, columnar=True, price=price,
                )
            ]  # fmt: skip
            assert blocks and all(isinstance(b, archive.KlineBlock) for b in blocks)  # the columnar path, not models
            bulk = run_job(job(price, start, end, "archive"), [sink], client)
            assert emu.count(price.endpoint) == 0  # every candle came from archive files
            want = expected(emu, price, start, end)
            rows, text = stored(sink, price)
            assert len(rows) == bulk.rows_written == len(want) == sum(len(b) for b in blocks)
            assert [PRICE_MODELS[price](**r) for r in rows] == want  # exact decimals, the pair for the index

            again = run_job(job(price, start, end, "archive"), [sink], client)  # idempotent
            assert again.rows_written == bulk.rows_written and stored(sink, price)[0] == rows

            while sink.delete_before(table, FAR, limit=100_000):
                pass
            assert sink.count(table) == 0
            rest = run_job(job(price, start, end, "rest"), [sink], client)
            assert emu.count(price.endpoint) > 0 and rest.rows_written == bulk.rows_written
            rest_rows, rest_text = stored(sink, price)
            assert rest_rows == rows
            assert rest_text.equals(text)  # byte for byte: the same stored text whichever path wrote it
    finally:
        sink.close()


@pytest.mark.parametrize(
    "store", [p for p in SINK_KINDS if p.values[0] in ("mysql", "postgres", "sqlite")], indirect=True
)
def test_a_file_with_a_bad_checksum_is_refused_and_nothing_of_it_written(
    store: tuple[str, str], emu: Emulator, client: Any
) -> None:
    kind, conn_id = store
    start, end = parse_time("2025-02-20T00:00:00Z"), parse_time("2025-02-25T00:00:00Z")  # 5 daily files
    price = Price.MARK
    table = Dataset(PRICE_KINDS[price], M5)
    emu.archive_corrupt = {"BTCUSDT-5m-2025-02-22.zip"}  # by file name (tests/emulator/archive.py)
    sink = new_sink(kind, conn_id)
    try:
        sink.ensure_schema()
        with pytest.raises(archive.ArchiveError, match=r"BTCUSDT-5m-2025-02-22\.zip.*checksum"):
            run_job(job(price, start, end, "archive"), [sink], client)
        assert emu.count(price.endpoint) == 0  # --source archive: no REST fill either
        opens = sorted(dt_to_ms(r["open_time"]) for r in sink.read(table, SYMBOL))
        bad_day = dt_to_ms(parse_time("2025-02-22T00:00:00Z"))
        assert not [t for t in opens if bad_day <= t < bad_day + DAY]  # nothing of the refused file
        assert opens == list(range(dt_to_ms(start), bad_day, 300_000))  # whole files before it, nothing after
        emu.archive_corrupt.clear()
        done = run_job(job(price, start, end, "archive"), [sink], client)  # a re-run converges
        assert sink.count(table) == done.rows_written == 5 * 288
    finally:
        sink.close()


def test_copy_moves_price_klines_as_blocks_exactly(
    sqlite_conn_id: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, emu: Emulator, client: Any
) -> None:
    """``copy`` reads a price-kline table as columns and loads it as a block of its series (it used to select the
    trade klines' columns from it); a second copy changes nothing."""
    from urllib.parse import quote

    from binance_extractor import store_copy

    monkeypatch.setenv("AIRFLOW_CONN_SQLITE_COPY", "sqlite://" + quote(str(tmp_path / "copy.sqlite"), safe=""))
    start, end = parse_time("2025-02-20T00:00:00Z"), parse_time("2025-02-22T00:00:00Z")
    source, target = new_sink("sqlite", sqlite_conn_id), new_sink("sqlite", "sqlite_copy")
    try:
        source.ensure_schema()
        target.ensure_schema()
        for price in (Price.PREMIUM, Price.INDEX):
            run_job(job(price, start, end, "archive"), [source], client)
        tables = [PRICE_KINDS[p].table(M5) for p in (Price.PREMIUM, Price.INDEX)]
        results = store_copy.copy_stores(source, target, tables)
        assert sum(r.written for r in results) == 2 * 2 * 288
        for price in (Price.PREMIUM, Price.INDEX):
            assert stored(target, price)[0] == stored(source, price)[0]
            assert stored(target, price)[1].equals(stored(source, price)[1])
        store_copy.copy_stores(source, target, tables)
        assert [target.count(Dataset.of_table(t)) for t in tables] == [2 * 288, 2 * 288]
    finally:
        source.close()
        target.close()
