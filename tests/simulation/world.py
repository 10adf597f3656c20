"""The simulated world of one seed: the clock, the exchange (emulator), the store, the schedule and the faults.

Everything random comes from ``self.rng`` (``random.Random(seed)``) and is drawn in a fixed order, so a seed
replays alone. Time only moves in ``run_until``: the event heap's next instant becomes the library's "now"
(``clock.FixedClock``) and the exchange's now is that plus the seed's skew. What an event does takes no simulated
time (the library's own waits, retries and budget pauses take real time, which no simulated instant depends on).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from binance_extractor import clock, config
from binance_extractor.budget import open_budget
from binance_extractor.clock import FixedClock
from binance_extractor.ratelimit import WeightRule
from binance_extractor.timeutil import dt_to_ms
from tests.emulator import Emulator
from tests.fixtures.databases import MYSQL_HOST, MYSQL_PORT, TcpProxy, mysql_admin
from tests.simulation.kill import Reaper

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
EPOCH_START = dt_to_ms(datetime(2026, 3, 1, tzinfo=UTC))  # the first simulated day is drawn after this
HTTP_FAULTS = ("502", "503", "504", "-1001", "reset", "truncated", "malformed", "timeout")
READ_TIMEOUT_S = 1.0  # the client's read timeout in the simulation (real seconds; BINANCE_HTTP_READ_TIMEOUT) ...
MARIADB_SHARE = 0.25
SLOW_ANSWER_S = 1.6  # ... and how late the exchange answers a "timeout" request (its weight is still counted)
FAULT_PATHS = ("/fapi/v1/klines", "/fapi/v1/fundingRate", "/fapi/v1/aggTrades", "/fapi/v1/time", None)


@dataclass(frozen=True)
class Outage:
    """A hole in the exchange's data: klines opening in ``[start, end]`` and funding in it; ``publish_at``: served
    after all from then on (late publication), None: a true exchange outage the ledger must record."""

    symbol: str
    start: int
    end: int
    publish_at: int | None


@dataclass
class Log:
    """What happened, for the failure message of a seed (the last lines are printed)."""

    lines: list[str] = field(default_factory=list)

    def add(self, at_ms: int, text: str) -> None:
        self.lines.append(f"{_iso(at_ms)} {text}")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class World:
    """One seed's world; ``with World(seed) as w: w.run()``."""

    def __init__(self, seed: int, days: int = 30, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")) -> None:
        self.seed = seed
        self.days = days
        self.symbols = symbols
        self.rng = random.Random(seed)
        rng = self.rng
        self.start = EPOCH_START + rng.randrange(0, 200) * DAY + rng.randrange(0, 24 * 60) * MINUTE
        self.end = self.start + days * DAY
        self.skew = rng.randint(-3000, 3000)  # the exchange's clock minus ours, ms
        # A quarter of the seeds keep MariaDB beside SQLite (every write goes to both; detection reads both),
        # reached through a loopback proxy that a database outage cuts.
        self.sinks: tuple[str, ...] = ("sqlite", "mysql") if rng.random() < MARIADB_SHARE else ("sqlite",)
        self.mysql_db: str | None = None
        self.mysql_proxy: TcpProxy | None = None
        self.clock = FixedClock(self.start)
        self.log = Log()
        self._heap: list[tuple[int, int, str, Callable[[], None]]] = []
        self._seq = 0
        self.outages: list[Outage] = []
        self.db_down = False
        self.db_down_until = 0
        self.db_listeners: list[Callable[[], None]] = []  # called when the database goes down (close connections)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sim-{seed}-", dir=_tmp_root()))
        self.emu: Emulator | None = None
        self.reaper = Reaper()  # DAG task processes killed between a write and its commit
        self._env_before: dict[str, str | None] = {}
        self._clock_before: Any = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> World:
        env = {
            "BINANCE_EXTRACTOR_DATA_DIR": str(self.workdir / "data"),
            "BINANCE_SYMBOLS": ",".join(self.symbols),
            "BINANCE_EXTRACTOR_SINKS": ",".join(self.sinks),
            "BINANCE_EXTRACTOR_HISTORY_DAYS": "2",
            "BINANCE_EXTRACTOR_BUDGET_NAME": f"sim-{self.seed}",
            "BINANCE_EXTRACTOR_BUDGET_URL": "",
            "BINANCE_HTTP_BACKOFF_MAX": "0.05",  # the library's retry waits are real time: keep them short
            "BINANCE_HTTP_READ_TIMEOUT": str(READ_TIMEOUT_S),
            "BINANCE_EXTRACTOR_DB_RETRY_ATTEMPTS": "1",  # a retry's back-off is real time; the tasks and the tail retry
            "BINANCE_API_KEY": "test-key",
        }
        (self.workdir / "data").mkdir(parents=True)
        if "mysql" in self.sinks:
            self.mysql_db = f"sim_{self.seed}_{os.getpid()}_{self.workdir.name[-6:]}".replace("-", "_")
            admin = mysql_admin()
            try:
                admin.cursor().execute(f"CREATE DATABASE `{self.mysql_db}`")
            finally:
                admin.close()
            self.mysql_proxy = TcpProxy(MYSQL_HOST, MYSQL_PORT)
            self.mysql_proxy.start()
            env["AIRFLOW_CONN_MYSQL_DEFAULT"] = f"mysql://root@127.0.0.1:{self.mysql_proxy.port}/{self.mysql_db}"
        # The deployment's config, with the gap filler's fill tasks capped low (a deployment may): fewer, larger
        # fill tasks, so a seed runs in seconds.
        raw = yaml.safe_load(config.DEFAULT_CONFIG.read_text(encoding="utf-8"))
        raw["gap_filler"]["max_mapped_tasks"] = self.rng.choice([1, 2, 3])
        (self.workdir / "config.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
        env["BINANCE_EXTRACTOR_CONFIG"] = str(self.workdir / "config.yaml")
        self._clock_before = clock.set_clock(self.clock)
        # A month in seconds of real time: the IP weight budget (per real minute) is scaled up to match; 429s are
        # injected instead (``plan_http_faults``) and must be honoured without a ban.
        self.emu = Emulator(
            clock=self.exchange_now, trade_bucket_ms=900_000, weight_limit=240_000, slow_seconds=SLOW_ANSWER_S
        ).start()
        self.reaper.install()
        env["BINANCE_FUTURES_BASE_URL"] = self.emu.url
        env["BINANCE_ARCHIVE_BASE_URL"] = self.emu.archive_url
        for key, value in env.items():
            self._env_before[key] = os.environ.get(key)
            os.environ[key] = value
        settings = getattr(config.settings, "cache_clear", None)
        if settings is not None:
            settings()
        # Every process of the IP adopts the weight rule one of them learned (as after any first exchangeInfo):
        # publish the emulator's scaled rule up front, so no first request waits under the default 2400 / min.
        budget = open_budget(self.emu.url)
        try:
            budget.set_rule(WeightRule.from_exchange_info(self.emu.exchange_info()))
        finally:
            budget.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self.reaper.uninstall()
        if self.emu is not None:
            self.emu.stop()
        for key, value in self._env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._clock_before is not None:
            clock.set_clock(self._clock_before)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.mysql_proxy is not None:
            self.mysql_proxy.cut()
        if self.mysql_db is not None:
            admin = mysql_admin()
            try:
                admin.cursor().execute(f"DROP DATABASE IF EXISTS `{self.mysql_db}`")
            finally:
                admin.close()

    # ------------------------------------------------------------------ time

    def now(self) -> int:
        return self.clock.now_ms()

    def exchange_now(self) -> int:
        return self.clock.now_ms() + self.skew

    def at(self, when_ms: int, name: str, fn: Callable[[], None]) -> None:
        """Schedule ``fn`` at ``when_ms`` (simulated, our clock); same instant: in scheduling order."""
        self._seq += 1
        heapq.heappush(self._heap, (int(when_ms), self._seq, name, fn))

    def run_until(self, until_ms: int) -> None:
        while self._heap and self._heap[0][0] <= until_ms:
            when, _, _name, fn = heapq.heappop(self._heap)
            if when > self.clock.now_ms():
                self.clock.set(when)
            fn()
        self.clock.set(max(self.clock.now_ms(), until_ms))

    # ------------------------------------------------------------------ faults

    def plan_outages(self, count: int) -> None:
        """True exchange outages and late-published ones, over the history and the month (ending >= 1 day before
        the end, so that the last gap filler run is past the ledger's settle time for every one)."""
        rng = self.rng
        lo, hi = self.start - 2 * DAY + HOUR, self.end - DAY - 4 * HOUR
        for _ in range(count):
            symbol = rng.choice(self.symbols)
            start = lo + rng.randrange(0, (hi - lo) // MINUTE) * MINUTE
            length = rng.choice([MINUTE, 5 * MINUTE, 17 * MINUTE, HOUR, 3 * HOUR + 7 * MINUTE])
            end = start + length - 1
            publish = None
            if rng.random() < 0.4:  # published late, within the ledger's settle time (1 h) of the hole's end
                publish = end + 1 + rng.randrange(1, 50) * MINUTE + rng.randrange(0, 60_000)
            if any(o.symbol == symbol and o.start <= end + DAY and start <= o.end + DAY for o in self.outages):
                continue  # one incident per symbol and day keeps the expected ledger unambiguous
            outage = Outage(symbol, start, end, publish)
            self.outages.append(outage)
            assert self.emu is not None
            self.emu.add_outage(symbol, start, end, publish)
            self.log.add(start, f"outage {symbol} [{_iso(start)}, {_iso(end)}] published {publish and _iso(publish)}")

    def plan_http_faults(self, count: int, with_429: bool) -> None:
        rng = self.rng
        for _ in range(count):
            when = self.start + rng.randrange(0, self.end - self.start)
            kind = rng.choice(HTTP_FAULTS)
            path = rng.choice(FAULT_PATHS)
            times = rng.choice([1, 1, 2, 3])
            self.at(when, "fault", lambda k=kind, p=path, n=times: self._inject(k, p, n))
        if with_429:
            when = self.start + rng.randrange(0, self.end - self.start)
            self.at(when, "429", lambda: self._inject("429", "/fapi/v1/klines", 1))

    def _inject(self, kind: str, path: str | None, times: int) -> None:
        assert self.emu is not None
        self.emu.inject("slow" if kind == "timeout" else kind, times=times, path=path)
        self.log.add(self.now(), f"inject {kind} x{times} on {path or 'any path'}")

    def plan_kills(self, count: int) -> None:
        """DAG task processes killed between a write and its commit: from a drawn instant on, the next task dies
        at the commit of its 1st to 6th write transaction (``kill.Reaper``)."""
        rng = self.rng
        for _ in range(count):
            when = self.start + rng.randrange(0, self.end - self.start)
            at_write = rng.randint(1, 6)
            self.at(when, "kill", lambda n=at_write: self._arm_kill(n))

    def _arm_kill(self, at_write: int) -> None:
        self.reaper.arm(at_write)
        self.log.add(self.now(), f"the next DAG task dies at the commit of its write transaction {at_write}")

    def plan_db_outages(self, count: int) -> None:
        rng = self.rng
        for _ in range(count):
            when = self.start + rng.randrange(0, self.end - self.start)
            length = rng.choice([20_000, 3 * MINUTE, 40 * MINUTE, 3 * HOUR])
            self.at(when, "db-down", lambda w=when, n=length: self._db_down(w + n))

    @property
    def db_path(self) -> Path:
        return self.workdir / "data" / "binance.sqlite"

    def _db_down(self, until: int) -> None:
        """The database is unreachable: every connection is dropped and none can be opened until ``until`` (the
        store's file is moved away and a directory stands in its place: SQLite cannot open it; MariaDB's proxy
        drops its connections and stops listening)."""
        if self.db_down:
            self.db_down_until = max(self.db_down_until, until)
            return
        for listener in self.db_listeners:
            listener()
        aside = self.workdir / "aside"
        aside.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(self.db_path) + suffix)
            if path.exists():
                path.rename(aside / path.name)
        self.db_path.mkdir()
        if self.mysql_proxy is not None:
            self.mysql_proxy.cut()  # MariaDB: every connection dropped, nothing listens
        self.db_down, self.db_down_until = True, until
        self.log.add(self.now(), f"database down until {_iso(until)}")
        self.at(until, "db-up", self._db_up)

    def _db_up(self) -> None:
        if not self.db_down or self.now() < self.db_down_until:
            if self.db_down:
                self.at(self.db_down_until, "db-up", self._db_up)
            return
        self.db_path.rmdir()
        aside = self.workdir / "aside"
        for item in aside.iterdir():
            item.rename(self.db_path.parent / item.name)
        if self.mysql_proxy is not None:
            self.mysql_proxy.start()
        self.db_down = False
        self.log.add(self.now(), "database up")


def _tmp_root() -> str | None:
    """RAM-backed when available: a seed commits thousands of small transactions, each an fsync on disk."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """The library logs every run; a seed's own log (``World.log``) says what matters. The levels are restored
    afterwards: a pytest worker runs other tests (of the logs themselves) after a seed."""
    loggers = [logging.getLogger(name) for name in (None, "binance_extractor", "airflow", "urllib3", "websockets")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)
