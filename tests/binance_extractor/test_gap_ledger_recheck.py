"""Ledger rows recorded before the evidence rule: schema version 3 marks them legacy, ``gaps --recheck-ledger``
asks REST once for each, fills and forgets those the exchange serves and rewrites the others with evidence.

Every store kind, starting from a real pre-version-3 ledger table (its eight old columns), against the emulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from binance_extractor import cli, clock
from binance_extractor.kinds import Dataset
from binance_extractor.sinks import open_sinks
from binance_extractor.sinks.base import GapRecord
from binance_extractor.sinks.schema import LATEST_VERSION, TableSpec, spec_for
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt
from tests.binance_extractor.store_helpers import store_kind  # noqa: F401
from tests.emulator import Emulator

KLINES_M5 = Dataset.of_table("klines_m5")

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
OLD_LEDGER_COLUMNS = 8  # table_name .. requests: the ledger before the evidence columns

pytestmark = pytest.mark.usefixtures("frozen_clock")


@pytest.fixture
def store(store_kind: str, request: pytest.FixtureRequest) -> str:  # noqa: F811
    """Every store kind, on this test's fresh database."""
    request.getfixturevalue(f"{store_kind}_conn_id")
    return store_kind


def old_ledger(store: str, rows: list[tuple[int, int]]) -> None:
    """A store as schema version 2 left it, whose ledger holds ``rows`` (klines_m5 BTCUSDT) confirmed the old way."""
    (sink,) = open_sinks([store])
    try:
        values = [
            GapRecord("klines_m5", "BTCUSDT", ms_to_dt(s), ms_to_dt(e), "old-gap-filler", "refetch:auto", 0).as_row()
            for s, e in rows
        ]
        old = [{k: v[k] for k in list(v)[:OLD_LEDGER_COLUMNS]} for v in values]
        if store == "mongo":
            sink._call(lambda db: db["gap_ledger"].delete_many({}))
            sink._call(lambda db: db["gap_ledger"].insert_many(old))
            sink._call(lambda db: db["schema_migrations"].delete_many({"_id": {"$gte": 3}}))
            return
        spec = spec_for("gap_ledger")
        v2 = TableSpec("gap_ledger", spec.columns[:OLD_LEDGER_COLUMNS], spec.key, None, spec.order_column)
        q, ph = sink._q, sink.ph

        def run(cur: Any) -> None:
            cur.execute(f"DROP TABLE {q('gap_ledger')}")
            cur.execute(sink._create_table_sql(v2))
            cols = list(old[0])
            types = {c.name: c.type for c in v2.columns}
            names, marks = ", ".join(q(c) for c in cols), ", ".join([ph] * len(cols))
            sql = f"INSERT INTO {q('gap_ledger')} ({names}) VALUES ({marks})"
            for row in old:
                cur.execute(sql, [sink._to_db(types[c], row[c]) for c in cols])
            cur.execute(f"DELETE FROM {q('schema_migrations')} WHERE version >= 3")

        sink._tx(run)
    finally:
        sink.close()


def delete_candles(sink: Any, lo: int, hi: int) -> None:
    """Lose the BTCUSDT m5 candles opening in [lo, hi) through the store's own connection."""
    if sink.name == "mongo":
        flt = {"symbol": "BTCUSDT", "open_time": {"$gte": ms_to_dt(lo), "$lt": ms_to_dt(hi)}}
        sink._call(lambda db: db["klines_m5"].delete_many(flt))
        return
    ph = sink.ph
    sql = f"DELETE FROM {sink._q('klines_m5')} WHERE symbol = {ph} AND open_time >= {ph} AND open_time < {ph}"
    args = ("BTCUSDT", sink.db_time(ms_to_dt(lo)), sink.db_time(ms_to_dt(hi)))
    sink._tx(lambda cur: cur.execute(sql, args))


def records(store: str) -> list[GapRecord]:
    (sink,) = open_sinks([store])
    try:
        return sink.gap_records(KLINES_M5, "BTCUSDT")
    finally:
        sink.close()


def test_legacy_rows_are_rechecked_once_against_rest(store: str, emulator: Emulator) -> None:
    now = clock.now_ms()
    m = now - now % DAY - DAY  # yesterday 00:00
    outage = (m + HOUR, m + HOUR + 30 * MIN)  # the exchange never had these candles
    served = (m + 3 * HOUR, m + 3 * HOUR + 20 * MIN)  # it has these: the old rule confirmed them wrongly
    emulator.add_outage("BTCUSDT", outage[0], outage[1] - 1)
    span = ["--start", iso(ms_to_dt(m)), "--end", iso(ms_to_dt(m + 6 * HOUR)), "--sink", store]
    cli.execute(["klines", "--interval", "5m", "--symbols", "BTCUSDT", "--source", "rest", *span])
    (sink,) = open_sinks([store])
    try:
        assert sink.count(KLINES_M5, "BTCUSDT") == 72 - 6
    finally:
        sink.close()
    old_ledger(store, [outage, served])
    (sink,) = open_sinks([store])  # this open migrates: version 3 marks the old rows legacy
    try:
        delete_candles(sink, *served)  # the candles the old ledger claims the exchange lacks are not stored either
        assert sink.schema_version() == LATEST_VERSION
        assert [(g.status, g.bound) for g in sink.gap_records(KLINES_M5, "BTCUSDT")] == [("legacy", None)] * 2
        assert sink.known_gaps(KLINES_M5, "BTCUSDT") == [(ms_to_dt(s), ms_to_dt(e)) for s, e in (outage, served)]
    finally:
        sink.close()

    emulator.reset_stats()
    results = cli.execute(["gaps", "--recheck-ledger", "--sink", store, "--requested-by", "test-recheck"])
    assert [(r["start"], r["status"]) for r in results] == [
        (iso(ms_to_dt(outage[0])), "confirmed"),
        (iso(ms_to_dt(served[0])), "filled"),
    ]
    (row,) = records(store)  # the served row is gone, the outage upgraded with its evidence
    assert (dt_to_ms(row.gap_start), dt_to_ms(row.gap_end), row.status) == (*outage, "confirmed")
    assert row.source == "rest" and row.requests >= 1 and row.checked_by == "test-recheck"
    assert row.bound is not None and dt_to_ms(row.bound) >= outage[1] and row.asked_at is not None
    (sink,) = open_sinks([store])
    try:
        assert sink.count(KLINES_M5, "BTCUSDT") == 72 - 6  # the 4 served candles are stored again
        assert sink.count(KLINES_M5, "BTCUSDT", ms_to_dt(served[0]), ms_to_dt(served[1])) == 4
    finally:
        sink.close()
    assert emulator.count("/fapi/v1/klines") == 2  # one page for each row

    emulator.reset_stats()
    assert cli.execute(["gaps", "--recheck-ledger", "--sink", store]) == []  # once: nothing legacy is left
    assert emulator.count("/fapi/v1/klines") == 0
