"""The production store: one Redis key per budget (Redis is usually there already as the Celery broker).

The state is read, updated by the same functions as every other store, and written back under
``WATCH``/``MULTI``: if another process changed it meanwhile the transaction is retried, so updates are
atomic without a second implementation of the algorithm in Lua.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from binance_extractor.errors import BudgetUnavailableError, InputError
from binance_extractor.masking import mask_url

T = TypeVar("T")


class RedisBudgetStore:
    def __init__(self, url: str, socket_timeout_s: float = 5.0) -> None:
        import redis  # imported on use: the embedded default needs no Redis client

        self.url = url
        self._redis = redis
        try:  # its errors quote pieces of the URL, the password's included: never shown
            self._client: Any = redis.Redis.from_url(
                url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
            )
        except ValueError:
            raise InputError(
                f"BINANCE_EXTRACTOR_BUDGET_URL {self.describe()} is not a URL redis-py reads "
                "(percent-encode / ? # in the password)"
            ) from None

    def describe(self) -> str:
        return mask_url(self.url)

    def transact(self, key: str, fn: Callable[[dict], T]) -> T:
        redis = self._redis
        try:
            with self._client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        raw = pipe.get(key)
                        state = json.loads(raw) if raw else {}
                        result = fn(state)
                        pipe.multi()
                        pipe.set(key, json.dumps(state, separators=(",", ":")))
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        continue  # someone else updated the state first: redo on the new state
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise BudgetUnavailableError(
                f"weight budget store {self.describe()} unreachable ({type(exc).__name__}); nothing was sent"
            ) from None

    def close(self) -> None:
        self._client.close()
