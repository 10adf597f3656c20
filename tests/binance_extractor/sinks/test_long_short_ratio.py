"""The global long/short account ratio: issue #26's proof that a dataset is a catalog entry.

It landed as an entry in ``catalog.DATASETS`` (shape GRID on 5 minutes, 30 days of REST, the archive's metrics
files), its model, the client's endpoint (the ``/futures/data`` statistics call open interest already used), a
reader row in ``sources.py``, a CLI command in the ``COMMANDS`` table and the emulator's endpoint. Extraction,
both sources, the stores, gap detection and the gap filler, the DAG family and the health page needed no branch.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from binance_extractor import cli, config
from binance_extractor.catalog import DataKind
from binance_extractor.clock import FixedClock
from binance_extractor.derivative_models import LongShortRatio
from binance_extractor.kinds import Dataset
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt
from tests.binance_extractor.sinks.conftest import SINK_KINDS, new_sink
from tests.emulator import datasets as DS

LONG_SHORT = Dataset(DataKind.LONG_SHORT_RATIO)
DAY, HOUR = 86_400_000, 3_600_000
PATH = "/futures/data/globalLongShortAccountRatio"


def _want(emu: Any, symbol: str, lo: int, hi: int) -> list[LongShortRatio]:
    """What the exchange serves in [lo, hi), from its own rows."""
    return [LongShortRatio.from_rest(DS.ls_row(emu, symbol, t)) for t in DS._oi_times(emu, symbol, 300_000, lo, hi - 1)]


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_rest_and_archive_land_the_same_exact_rows_in_every_store(
    kind: str, request: pytest.FixtureRequest, frozen_clock: FixedClock, make_emulator: Any
) -> None:
    """The last two days from REST and two days two months ago from the metrics files: every 5-minute mark once,
    the exchange's decimals exact; a second run changes nothing."""
    conn_id = request.getfixturevalue(f"{kind}_conn_id")
    emu = make_emulator()
    now = frozen_clock.now_ms()
    sinks = ["--sink", kind, "--conn-id", conn_id]
    old = now - now % DAY - 60 * DAY
    recent = (now - 2 * DAY) - (now - 2 * DAY) % 300_000
    for _ in range(2):
        for lo, hi in ((old, old + 2 * DAY), (recent, now - HOUR)):
            span = ["--symbols", "BTCUSDT", "--start", iso(ms_to_dt(lo)), "--end", iso(ms_to_dt(hi))]
            cli.execute(["long-short-ratio", *span, *sinks])
    sink = new_sink(kind, conn_id)
    try:
        got = [LongShortRatio(**r) for r in sink.read(LONG_SHORT, "BTCUSDT")]
    finally:
        sink.close()
    want = _want(emu, "BTCUSDT", old, old + 2 * DAY) + _want(emu, "BTCUSDT", recent, now - HOUR)
    assert len(got) == len(want) == 2 * 288 + (now - HOUR - recent) // 300_000  # 288 marks a day
    assert got == want
    assert all(
        g.long_short_ratio == Decimal(DS.ls_row(emu, "BTCUSDT", dt_to_ms(g.time))["longShortRatio"]) for g in got
    )
    assert emu.count(PATH) > 0  # the recent days came from REST ...
    assert emu.count(PATH) < 20  # ... and the old ones from the archive, not from pages of REST


def test_a_hole_is_found_and_refilled_by_the_gap_filler(
    sqlite_conn_id: str, frozen_clock: FixedClock, make_emulator: Any
) -> None:
    from tests.binance_extractor.test_gaps import delete

    make_emulator()
    now = frozen_clock.now_ms()
    lo, hi = now - DAY - (now - DAY) % 300_000, now - 3 * HOUR
    sinks = ["--sink", "sqlite", "--conn-id", sqlite_conn_id]
    span = ["--symbols", "ETHUSDT", "--start", iso(ms_to_dt(lo)), "--end", iso(ms_to_dt(hi))]
    cli.execute(["long-short-ratio", *span, *sinks])
    sink = new_sink("sqlite", sqlite_conn_id)
    try:
        full = sink.count(LONG_SHORT, "ETHUSDT")
        delete(sink, "long_short_ratio", "ETHUSDT", lo + HOUR, lo + 2 * HOUR)
        assert sink.count(LONG_SHORT, "ETHUSDT") == full - 12
    finally:
        sink.close()
    argv = ["fill-gaps", "--table", "long_short_ratio", "--symbols", "ETHUSDT", "--end", iso(ms_to_dt(hi)), *sinks]
    (report,) = cli.execute(argv)
    assert (report["totals"]["found"], report["totals"]["filled"], report["totals"]["remaining"]) == (1, 1, 0)
    sink = new_sink("sqlite", sqlite_conn_id)
    try:
        assert sink.count(LONG_SHORT, "ETHUSDT") == full
    finally:
        sink.close()


def test_the_dag_family_and_the_cli_come_from_the_catalog(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Enabled under ``derivatives:``, the series gets its scheduled DAG from the factory like open interest."""
    import yaml

    from binance_extractor.airflow.dagfactory import derivative_dags

    raw = yaml.safe_load(config.DEFAULT_CONFIG.read_text(encoding="utf-8"))
    assert raw["derivatives"]["long_short_ratio"]["enabled"] is False  # off by default, like every derivative
    raw["derivatives"]["long_short_ratio"]["enabled"] = True
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("BINANCE_EXTRACTOR_CONFIG", str(path))
    (dag,) = derivative_dags().values()
    assert dag.dag_id == "binance_long_short_ratio"
    assert cli.main(["long-short-ratio", "--source", "nowhere"]) != 0  # one line, no traceback
