"""Re-check, once, the ledger rows recorded before the evidence rule (``legacy``) against REST.

Why: until schema version 3 a hole still open after any "successful" fill went into the ledger, so some rows hold
candles the exchange serves (see ``gaps/evidence.py``); detection skips them for good. Schema version 3 marks every
such row ``legacy``; ``gaps --recheck-ledger`` (and the gap filler DAG, by itself, while any are left) asks REST for
each one's whole range under the evidence rule: a row whose range the exchange now serves is deleted and its rows
stored, the others are rewritten with their evidence (confirmed, or pending: "not fillable yet"). Rows already
judged by the rule are never asked again, so this runs once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from binance_extractor.gaps import evidence
from binance_extractor.gaps.models import Hole
from binance_extractor.gaps.settings import GapSettings, gap_dataset
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import GAP_LEGACY, GapRecord, Sink, stores
from binance_extractor.timeutil import dt_to_ms

log = logging.getLogger(__name__)

METHOD = "recheck:rest"


def legacy_records(
    sinks: Sequence[Sink], datasets: Sequence[Dataset] | None = None, symbols: Sequence[str] | None = None
) -> list[GapRecord]:
    """The legacy rows of every store (once each, whichever stores hold them), optionally of some tables/symbols."""
    tables = None if datasets is None else {d.table for d in datasets}
    out: dict[tuple[str, str, int, int], GapRecord] = {}
    for store in stores(sinks):
        for g in store.gap_records():
            if g.status != GAP_LEGACY or (tables is not None and g.table not in tables):
                continue
            if symbols and g.symbol not in symbols:
                continue
            out.setdefault((g.table, g.symbol, dt_to_ms(g.gap_start), dt_to_ms(g.gap_end)), g)
    return [out[k] for k in sorted(out)]


def hole_of(record: GapRecord) -> Hole:
    """The hole a ledger row describes (its range is the refetch range and its own context)."""
    dataset = gap_dataset(record.table)
    start, end = dt_to_ms(record.gap_start), dt_to_ms(record.gap_end)
    tf = dataset.grid
    missing = tf.count_between(start, end) if tf is not None else 1
    return Hole(dataset, record.symbol, start, end, max(1, missing), start, end)


def recheck(
    sinks: Sequence[Sink],
    client: Any,
    *,
    settings: GapSettings | None = None,
    checked_by: str = "recheck",
    datasets: Sequence[Dataset] | None = None,
    symbols: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Judge every legacy row again (``evidence.check``); one result per row: ``filled`` (the exchange serves its
    range: the row is gone, its rows stored), ``confirmed`` or ``not_fillable_yet`` (rewritten with evidence)."""
    settings = settings or GapSettings()
    out: list[dict[str, Any]] = []
    for record in legacy_records(sinks, datasets, symbols):
        hole = hole_of(record)
        verdicts = evidence.check(hole, sinks, client, source="rest", settings=settings)
        for store in stores(sinks):
            store.delete_gap(record.dataset, record.symbol, record.gap_start)
        evidence.record(verdicts, sinks, checked_by, METHOD)
        if any(v.status == evidence.SERVED for v in verdicts):
            status = "filled"
        elif all(v.status == evidence.CONFIRMED for v in verdicts):
            status = evidence.CONFIRMED
        else:
            status = evidence.NOT_FILLABLE_YET
        ev = verdicts[0].evidence
        log.info("legacy ledger row %s re-checked: %s (%d request(s))", hole.describe(), status, ev.requests)
        out.append(
            {
                **hole.range_dict(),
                "was": GAP_LEGACY,
                "status": status,
                "requests": ev.requests,
                "verdicts": [v.to_dict() for v in verdicts],
            }
        )
    return out
