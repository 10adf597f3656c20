"""The REQUEST_WEIGHT rule as the exchange states it in exchangeInfo ``rateLimits``.

Binance counts weight per IP in fixed windows and reports the IP-wide total in every response's
``X-MBX-USED-WEIGHT-<n><unit>`` header. The budget shared by every process on the IP lives in
``binance_extractor.budget``.
"""

from __future__ import annotations

from dataclasses import dataclass

_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_UNIT_LETTER = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}


@dataclass(frozen=True)
class WeightRule:
    """The REQUEST_WEIGHT limit as exchangeInfo states it."""

    limit: int = 2400
    window_seconds: int = 60
    header: str = "X-MBX-USED-WEIGHT-1M"

    @classmethod
    def from_exchange_info(cls, info: dict) -> WeightRule:
        for rule in info.get("rateLimits", []):
            if rule.get("rateLimitType") == "REQUEST_WEIGHT":
                unit = str(rule.get("interval", "MINUTE")).upper()
                num = int(rule.get("intervalNum", 1))
                return cls(
                    limit=int(rule["limit"]),
                    window_seconds=num * _UNIT_SECONDS.get(unit, 60),
                    header=f"X-MBX-USED-WEIGHT-{num}{_UNIT_LETTER.get(unit, 'M')}",
                )
        return cls()
