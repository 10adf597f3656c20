"""One request-weight budget for every process and pod on an egress IP.

``SharedBudget`` keeps the IP's state (weight used this window, reservations in flight, the 429 pause, the 418
ban, the fundingRate window, the limit from exchangeInfo) in a store every process reaches: by default a
SQLite file in the data directory (one machine), in production Redis (``BINANCE_EXTRACTOR_BUDGET_URL``). A
request reserves its weight atomically first; the answer's ``X-MBX-USED-WEIGHT-*`` header reconciles the count
(clients outside the budget count too). If the store cannot be reached, nothing is sent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from binance_extractor import config
from binance_extractor.budget import state as S
from binance_extractor.errors import BudgetUnavailableError, InputError, IPBannedError
from binance_extractor.masking import register_secret, url_password
from binance_extractor.ratelimit import WeightRule
from binance_extractor.weights import FUNDING_WINDOW, RequestWindow

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TTL_S = 90.0  # longer than any request may take (connect 5 s + read 30 s, with room)


class BudgetStore(Protocol):
    def transact(self, key: str, fn: Callable[[dict], T]) -> T: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Ticket:
    id: str
    weight: int


def open_budget_store(url: str | None = None) -> BudgetStore:
    """``BINANCE_EXTRACTOR_BUDGET_URL``: unset = ``<data dir>/budget.sqlite``; ``sqlite:///path``; ``redis://``;
    ``mysql://`` / ``mariadb://`` / ``postgresql://`` (SQLAlchemy URLs). A URL that cannot work (unknown scheme,
    a driver that is not installed, a timeout parameter that is not a number) is one ``InputError`` line."""
    url = url if url is not None else os.environ.get("BINANCE_EXTRACTOR_BUDGET_URL", "")
    register_secret(url_password(url))  # whatever text shows the URL from now on, its password is masked
    register_secret(unquote(url_password(url) or ""))
    if not url:
        from binance_extractor.budget.sqlite_store import SqliteBudgetStore

        return SqliteBudgetStore(config.data_dir() / "budget.sqlite")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        from binance_extractor.budget.sqlite_store import SqliteBudgetStore

        path = url.split("://", 1)[1]
        return SqliteBudgetStore(config.data_dir() / "budget.sqlite" if path in ("", "/") else _sqlite_path(path))
    if scheme in ("redis", "rediss", "unix"):
        from binance_extractor.budget.redis_store import RedisBudgetStore

        return RedisBudgetStore(url)
    if scheme.split("+")[0] in ("mysql", "mariadb", "postgresql", "postgres"):
        from binance_extractor.budget.sql_store import SqlBudgetStore

        if scheme in ("postgres", "postgresql"):  # psycopg 3, as the PostgreSQL sink: its waits take a deadline
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return SqlBudgetStore(url)
    raise InputError(
        "BINANCE_EXTRACTOR_BUDGET_URL must be sqlite:///PATH, redis://HOST:PORT/DB, mysql://..., mariadb://... or "
        f"postgresql://..., not {scheme}://"
    )


def _sqlite_path(path: str) -> Any:
    from pathlib import Path

    return Path(path[1:] if path.startswith("//") else path)


def budget_key(base_url: str, name: str | None = None) -> str:
    """One budget per (budget name, exchange host): the name separates clusters with different egress IPs."""
    name = name or os.environ.get("BINANCE_EXTRACTOR_BUDGET_NAME") or "default"
    return f"binance-budget:{name}:{urlsplit(base_url).netloc or base_url}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class SharedBudget:
    """Blocks a request until its weight fits the IP's budget; every process with the same store and key shares it."""

    def __init__(
        self,
        store: BudgetStore,
        key: str,
        *,
        rule: WeightRule | None = None,
        margin: float = 0.95,
        max_ban_wait: float = 300.0,
        ttl_s: float | None = None,
        window: RequestWindow = FUNDING_WINDOW,
        funding_limit: tuple[int, float] | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.key = key
        self.rule = rule or WeightRule()
        self.rule_known = rule is not None
        self.margin = margin
        self.max_ban_wait = max_ban_wait
        env_ttl = os.environ.get("BINANCE_EXTRACTOR_BUDGET_TTL")
        self.ttl_s = ttl_s if ttl_s is not None else float(env_ttl) if env_ttl else DEFAULT_TTL_S
        # the separate window (``acquire(..., funding=True)``): fundingRate's by default, openInterestHist's for the
        # client's open-interest budget; ``funding_limit`` overrides its numbers (tests, small emulators)
        if funding_limit is not None:
            window = RequestWindow(window.endpoint, window.paths, int(funding_limit[0]), float(funding_limit[1]))
        self.window = window
        self.funding_limit = window.limit
        self._now = now
        self._sleep = sleep
        self._lock = threading.Lock()
        self.max_reported = 0
        self.waited_seconds = 0.0

    # -- limits ----------------------------------------------------------------------------------------------
    @property
    def budget(self) -> int:
        return max(1, int(self.rule.limit * self.margin))

    def limits(self) -> S.Limits:
        window = float(self.rule.window_seconds)
        return S.Limits(
            budget=self.budget,
            window_s=window,
            funding_budget=max(1, int(self.funding_limit[0] * self.margin)),
            funding_window_s=float(self.funding_limit[1]),
            ttl_s=self.ttl_s,
            lag_s=min(0.1, window * 0.02),
        )

    def set_rule(self, rule: WeightRule) -> None:
        """The REQUEST_WEIGHT rule from exchangeInfo; published so other processes need not ask."""
        self.rule, self.rule_known = rule, True
        now = self._now()

        def publish(st: S.State) -> None:
            st["rule"] = [rule.limit, rule.window_seconds, rule.header, now]

        self.store.transact(self.key, publish)

    def load_shared_rule(self, max_age_s: float = 3600.0) -> bool:
        """Adopt the rule another process learned recently; False if there is none."""
        got = self.store.transact(self.key, lambda st: st.get("rule"))
        if got and self._now() - float(got[3]) < max_age_s:
            self.rule, self.rule_known = WeightRule(int(got[0]), int(got[1]), str(got[2])), True
            return True
        return False

    # -- requests --------------------------------------------------------------------------------------------
    def acquire(self, weight: int, *, funding: bool = False) -> Ticket:
        """Wait until ``weight`` fits (no ban, no pause, room in the window), then reserve it in the shared state."""
        weight = max(0, min(weight, self.budget))
        announced = ""
        while True:
            grant = self._try(weight, funding)
            if grant.ticket is not None:
                return Ticket(grant.ticket, weight)
            if grant.reason == "ban" and grant.wait_s > self.max_ban_wait:
                raise IPBannedError(
                    grant.until,
                    f"IP banned by Binance (HTTP 418) until {_iso(grant.until)} (another {grant.wait_s:.0f} s, "
                    f"longer than the {self.max_ban_wait:.0f} s this run may wait); nothing was sent",
                )
            if grant.reason in ("ban", "pause", "funding") and announced != f"{grant.reason}{grant.until}":
                announced = f"{grant.reason}{grant.until}"
                what = {"ban": "IP ban (HTTP 418)", "pause": "weight limit pause (HTTP 429)"}
                log.warning(
                    "%s: waiting until %s",
                    what.get(grant.reason, self.window.label),
                    _iso(grant.until),
                )
            wait = max(grant.wait_s, 0.001)
            self.waited_seconds += wait
            self._sleep(wait)

    def _try(self, weight: int, funding: bool) -> S.Grant:
        limits, now = self.limits(), self._now()
        return self.store.transact(self.key, lambda st: S.acquire(st, now, weight, limits, funding))

    def release(self, ticket: Ticket, used: int | None) -> None:
        """Record an answer (``used``: its IP-wide weight header). A store failure here only logs: the
        reservation then expires on its own."""
        if used is not None:
            self.max_reported = max(self.max_reported, used)
        limits, now = self.limits(), self._now()
        try:
            self.store.transact(self.key, lambda st: S.release(st, now, ticket.id, used, limits))
        except BudgetUnavailableError as exc:
            log.warning("%s (the reservation expires in %.0f s)", exc, self.ttl_s)

    def cancel(self, ticket: Ticket) -> None:
        now = self._now()
        try:
            self.store.transact(self.key, lambda st: S.cancel(st, now, ticket.id))
        except BudgetUnavailableError as exc:
            log.warning("%s", exc)

    def pause(self, retry_after: float) -> None:
        """HTTP 429: no process on the IP sends anything before Retry-After has passed."""
        limits, now = self.limits(), self._now()
        until = self.store.transact(self.key, lambda st: S.pause(st, now, max(retry_after, 1.0), limits))
        log.warning("weight limit hit (HTTP 429): every process pauses until %s", _iso(until))

    def ban(self, retry_after: float) -> None:
        """HTTP 418: the IP is banned; every process waits for the end or fails at once when it is too far."""
        now = self._now()
        until = self.store.transact(self.key, lambda st: S.ban(st, now, max(retry_after, 1.0)))
        log.error("IP banned by Binance (HTTP 418) until %s", _iso(until))

    def snapshot(self) -> dict[str, Any]:
        """A copy of the shared state (tests, diagnostics)."""
        return dict(self.store.transact(self.key, lambda st: dict(st)))

    def close(self) -> None:
        self.store.close()


def open_budget(base_url: str, **kwargs: Any) -> SharedBudget:
    """The budget configured by the environment for ``base_url``."""
    return SharedBudget(open_budget_store(), budget_key(base_url), **kwargs)


__all__ = ["BudgetStore", "SharedBudget", "Ticket", "budget_key", "open_budget", "open_budget_store"]
