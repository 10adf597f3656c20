"""Mongo-specific behaviour on the SecantusDB wire server: indexes, Decimal128, a server going away."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pymongo
import pytest
from bson.decimal128 import Decimal128

from binance_extractor.errors import SinkError
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks.mongo import MongoStore
from tests.binance_extractor.sinks.conftest import klines, trades
from tests.fixtures.databases import MongoServer

KLINES_M5 = Dataset.of_table("klines_m5")
TRADES = Dataset.of_table("trades")

pytestmark = pytest.mark.mongo


def test_collections_have_unique_key_indexes_and_decimal128(mongo_conn_id: str, mongo_server: MongoServer) -> None:
    sink = MongoStore(mongo_conn_id, server_timeout_ms=2000)
    sink.write(KLINES_M5, klines(n=5))
    sink.write(TRADES, trades(n=5))
    db = sink._database()
    for name, key in [("klines_m5", [("symbol", 1), ("open_time", 1)]), ("trades", [("symbol", 1), ("trade_id", 1)])]:
        info = db[name].index_information()
        assert info["pk"]["unique"] and info["pk"]["key"] == key
    raw = pymongo.MongoClient(mongo_server.host, mongo_server.port)[db.name]["klines_m5"].find_one()
    assert isinstance(raw["close"], Decimal128) and raw["close"].to_decimal() == klines(n=1)[0].close
    assert "ix_runs_table_symbol_started" in db["extraction_runs"].index_information()
    sink.close()


def test_inexact_decimal_is_refused_before_anything_is_sent(mongo_conn_id: str) -> None:
    sink = MongoStore(mongo_conn_id, server_timeout_ms=2000)
    rows = klines(n=10)
    bad = rows[5].model_copy(update={"high": Decimal("1.0000000000000000000000000000000000001")})
    with pytest.raises(SinkError, match="does not fit Decimal128 exactly"):
        sink.write(KLINES_M5, [*rows[:5], bad, *rows[6:]])
    assert sink.count(KLINES_M5) == 0
    sink.close()


def test_wrong_scheme_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MONGO_DEFAULT", "mysql://127.0.0.1:1/x")
    with pytest.raises(SinkError, match="conn_type must be 'mongo'"):
        MongoStore().ensure_schema()


@pytest.fixture
def own_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MongoServer]:
    workdir = Path(tempfile.mkdtemp(prefix="bx-mongo-own-"))
    server = MongoServer(workdir)
    server.start()
    monkeypatch.setenv("AIRFLOW_CONN_MONGO_DEFAULT", server.uri(f"bx_{uuid.uuid4().hex[:8]}"))
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def test_server_going_away_then_rerun_completes(own_server: MongoServer) -> None:
    rows = klines(n=300)
    sink = MongoStore(retry_attempts=2, server_timeout_ms=500, retry_max_wait=0.2)
    sink.write(KLINES_M5, rows[:100])
    own_server.stop()
    with pytest.raises(SinkError) as err:
        sink.write(KLINES_M5, rows[100:200])
    msg = str(err.value)
    assert msg.startswith(f"mongo sink (127.0.0.1:{own_server.port}/"), msg
    assert "\n" not in msg and len(msg) < 600
    sink.close()
    own_server.start()  # same storage and port: a later run of the whole range completes
    again = MongoStore(server_timeout_ms=5000)
    assert again.write(KLINES_M5, rows) == 300
    assert [Kline(**r) for r in again.read(KLINES_M5, "XRPUSDT")] == rows
    again.close()
