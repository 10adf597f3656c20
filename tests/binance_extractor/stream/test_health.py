"""The tail's liveness and readiness: silent sockets and a stuck writer turn the probes unhealthy.

The judgement reads ``binance_extractor.clock``: the tests move a ``FixedClock`` past the thresholds, nothing
waits for real time to pass. The probes are read over HTTP, as the kubelet reads them.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from binance_extractor import clock
from binance_extractor.clock import FixedClock
from binance_extractor.stream import health
from binance_extractor.stream.health import TailHealth
from tests.binance_extractor.stream.harness import T0, running_tail, wait_until
from tests.emulator import Emulator

MIN = 60_000


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FixedClock]:
    monkeypatch.setenv("BINANCE_EXTRACTOR_HISTORY_DAYS", "1")
    fc = FixedClock(T0)
    with clock.using(fc):
        yield fc


@pytest.fixture
def emu(make_emulator: Any, fixed_clock: FixedClock) -> Emulator:
    return make_emulator(clock=fixed_clock)  # type: ignore[no-any-return]


def probe(server: Any, path: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if exc.headers.get("Content-Type") == "application/json" else {}


@pytest.fixture
def served() -> Iterator[list[Any]]:
    servers: list[Any] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_judgement_against_a_pinned_clock(fixed_clock: FixedClock) -> None:
    h = TailHealth(2, ready_after_s=90, live_after_s=300)
    assert not h.readiness().ok and h.liveness().ok  # starting: not ready, not dead
    h.heard(0)
    h.heard(1)
    assert h.readiness().ok
    fixed_clock.advance(60_000)
    h.heard(0)
    fixed_clock.advance(31_000)  # connection 1 silent for 91 s
    ready = h.readiness()
    assert not ready.ok and ready.reasons == ["connection 1: silent for 91 s"]
    assert h.liveness().ok
    fixed_clock.advance(210_000)  # 301 s
    assert h.liveness().reasons == ["connection 1: silent for 301 s"]  # connection 0: 241 s, still alive
    h.heard(0)
    h.heard(1)
    h.writer_busy()
    fixed_clock.advance(200_000)
    h.heard(0)
    h.heard(1)
    h.writer_progress()  # a write committed: the clock of the stuck writer restarts
    fixed_clock.advance(200_000)
    h.heard(0)
    h.heard(1)
    assert h.liveness().ok and not h.readiness().ok
    fixed_clock.advance(101_000)
    h.heard(0)
    h.heard(1)
    assert h.liveness().reasons == ["writer: no progress for 301 s (database hung or failing)"]
    h.writer_idle()
    assert h.liveness().ok and h.readiness().ok


def test_silent_sockets_fail_readiness_then_liveness(
    sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock, served: list[Any]
) -> None:
    with running_tail(emu, ["BTCUSDT"], ["1m"]) as run:
        served.append(server := health.serve(run.tail.health, 0, host="127.0.0.1"))
        assert probe(server, "/readyz") == (200, {"status": "ok", "reasons": []})
        assert probe(server, "/livez")[0] == 200
        assert emu.stream.freeze() == 1  # the exchange's side goes silent without closing the socket
        fixed_clock.advance(2 * MIN)
        code, body = probe(server, "/readyz")
        assert code == 503 and body["reasons"][0].startswith("connection 0: silent for")
        assert probe(server, "/livez")[0] == 200  # not dead yet
        fixed_clock.advance(4 * MIN)
        code, body = probe(server, "/livez")
        assert code == 503 and body["status"] == "unhealthy"
        (reason,) = body["reasons"]
        silent = re.fullmatch(r"connection 0: silent for (\d+) s", reason)
        assert silent and int(silent.group(1)) > 300, reason  # 360 s unless a last message was still in flight
        assert probe(server, "/metrics")[0] == 404
        run.stop()


class BlockingSink:
    """A real store whose writes wait for the test once armed (a database that hangs)."""

    def __init__(self, sink: Any) -> None:
        self._sink = sink
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, dataset: Any, rows: Any) -> int:
        if self.armed:
            self.entered.set()
            self.release.wait(120)  # hang guard only
        return int(self._sink.write(dataset, rows))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


def test_a_stuck_writer_fails_both_probes_until_it_moves(
    sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock, served: list[Any]
) -> None:
    blocking: list[BlockingSink] = []

    def wrap(sinks: list[Any]) -> list[Any]:
        blocking.extend(BlockingSink(s) for s in sinks)
        return list(blocking)

    with running_tail(emu, ["ETHUSDT"], ["1m"], wrap=wrap) as run:
        served.append(server := health.serve(run.tail.health, 0, host="127.0.0.1"))
        assert probe(server, "/livez")[0] == 200
        blocking[0].armed = True
        fixed_clock.advance(MIN)  # a candle closes; its write hangs
        assert blocking[0].entered.wait(60), "the write never started"
        fixed_clock.advance(5 * MIN + 1_000)  # the stream keeps talking (candles close), the writer does not move
        wait_until(lambda: run.stats.candles_queued >= 6, "the closes that keep arriving")
        code, body = probe(server, "/livez")
        assert code == 503 and body["reasons"] == ["writer: no progress for 301 s (database hung or failing)"]
        assert probe(server, "/readyz")[0] == 503
        blocking[0].armed = False
        blocking[0].release.set()  # the database answers again
        wait_until(run.idle, "the writer")
        assert probe(server, "/livez") == (200, {"status": "ok", "reasons": []})
        assert probe(server, "/readyz")[0] == 200
        stats = run.stop()
    assert stats.candles_stored == 6  # nothing was lost while it hung


def test_the_probes_report_gauges_and_fills(sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock) -> None:
    from binance_extractor import telemetry

    with telemetry.capture() as cap, running_tail(emu, ["BTCUSDT"], ["1m"], report_every_s=0.05) as run:
        wait_until(lambda: cap.points("binance.stream.ready"), "the readiness gauge")
        assert emu.stream.drop_all() == 1
        wait_until(lambda: run.stats.reconnects == 1 and run.stats.fills == 2 and run.idle(), "the reconnect")
        stats = run.stop()
        assert cap.value("binance.stream.fills") == stats.fills == 2
        assert cap.value("binance.stream.live") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--health-port", "70000"], "--health-port must be 0..65535"),
        (["--ready-after", "400", "--live-after", "300"], "--ready-after must be positive and at most --live-after"),
    ],
)
def test_bad_probe_settings_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from binance_extractor import cli

    assert cli.main(["stream", "--symbols", "BTCUSDT", *argv]) == 2
    assert message in capsys.readouterr().err
