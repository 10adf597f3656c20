"""Per-table retention: delete rows older than N days, in bounded batches (off unless configured).

Configured in one place, ``retention:`` in ``include/config.yaml`` (``{klines_m5: 90}``; absent or null
keeps everything). Each statement deletes at most ``batch`` rows of one symbol through the key index, so a
large purge never holds long locks or one huge transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from binance_extractor import clock, config
from binance_extractor.errors import InputError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Store
from binance_extractor.sinks.schema import spec_for

log = logging.getLogger(__name__)


def cutoffs(settings: config.Settings | None = None, now: datetime | None = None) -> dict[str, datetime]:
    """Table -> oldest key time to keep, for every table with a retention in days."""
    cfg = settings or config.settings()
    current = now or clock.now()
    out: dict[str, datetime] = {}
    for table, days in (cfg.retention or {}).items():
        if days is None:
            continue
        if not spec_for(table).is_data:
            raise InputError(f"retention applies to market data tables only, not {table!r}")
        if int(days) <= 0:
            raise InputError(f"retention for {table} must be a positive number of days, not {days!r}")
        out[table] = current - timedelta(days=int(days))
    return out


def apply_retention(
    sink: Store, settings: config.Settings | None = None, batch: int = 10_000, now: datetime | None = None
) -> dict[str, int]:
    """Delete expired rows table by table, ``batch`` rows per statement, until none are left."""
    deleted: dict[str, int] = {}
    for table, cutoff in cutoffs(settings, now).items():
        total, dataset = 0, Dataset.of_table(table)
        while True:
            n = sink.delete_before(dataset, cutoff, limit=batch)
            total += n
            if n == 0:
                break
        deleted[table] = total
        log.info("retention on %s (%s): deleted %d rows older than %s", table, sink.name, total, cutoff.isoformat())
    return deleted
