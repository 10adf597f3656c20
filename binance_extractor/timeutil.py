"""UTC time helpers: every timestamp in the library is an aware UTC datetime with millisecond precision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from binance_extractor.errors import InputError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_to_dt(ms: int) -> datetime:
    """Epoch milliseconds -> aware UTC datetime (exact integer arithmetic: no float round-trip)."""
    return _EPOCH + timedelta(milliseconds=int(ms))


def dt_to_ms(dt: datetime) -> int:
    """Aware datetime -> epoch milliseconds (naive datetimes are taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def now_ms() -> int:
    """The library's clock (``binance_extractor.clock``): injectable in tests, exchange-aligned in the client."""
    from binance_extractor import clock

    return clock.now_ms()


def parse_time(value: str) -> datetime:
    """Parse ISO 8601 (date or date-time, ``Z`` allowed) or epoch ms; naive means UTC."""
    raw = value.strip()
    if raw.isdigit():
        return ms_to_dt(int(raw))
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"malformed date {value!r}: use ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return truncate_ms(dt.astimezone(UTC))


def truncate_ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def iso(dt: datetime) -> str:
    """ISO 8601 with milliseconds and ``Z``: the library's canonical text form."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
