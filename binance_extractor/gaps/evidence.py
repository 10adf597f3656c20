"""The one evidence rule of the gap ledger: when a hole may be recorded as exchange-side, and with what proof.

Why it exists: the ledger is forever (detection never looks at a confirmed range again), so a wrong row loses
data for good. It used to record any hole still open after a fill that "succeeded", which confirmed candles that
exist: the newest candle when detection (this machine's clock) and refetch (the exchange's) disagreed about what
is closed, whatever ``--source archive`` had not published yet, and a candle the exchange publishes late.

A hole is recorded exchange-side (``confirmed``) only if all of these hold:

1. REST (never the archive alone) was asked for the whole hole (``ask``);
2. the whole hole lay below the exchange's closed bound (``exchange_clock.closed_before``) when it was asked;
3. the answer held no row inside the hole that the stores lacked;
4. the hole ended at least ``ledger_settle`` (config ``gap_filler.ledger_settle_minutes``, 1 h) before that bound,
   so a candle the exchange publishes late after an incident is still fetched. "Ended" means the exchange resumed:
   a kline hole's end is only where detection stopped looking (its bound, a weekly chunk's end), so the stores must
   also hold a candle after it that is older than the settle instant (``Evidence.resumed``).

Anything else stays an open hole, recorded ``pending`` and reported as "not fillable yet" (with why): neither a
failure of the run nor confirmed, and judged again by the next run. A hole is judged whole, never split at the
settle instant: an incident still going on (the simulation's seed 190: the 02:00 run two hours into an outage the
exchange published an hour after it ended) would have its older part confirmed, and the exchange publishes an
incident's data all at once. The resumption read of rule 4 is made for holes on a time grid (klines, the
statistics) and for funding holes (one cut at a weekly chunk's end was confirmed while its outage went on, the
funding twin of seed 190); an aggregate-trade hole ends at the stored trade that follows it.

Every path that records holes calls ``check`` (the gap filler's ``fill_chunk``, ``fill-gaps``, ``gaps
--recheck-ledger`` and the gap filler DAG through them); ``judge`` is the rule itself, pure, and every ledger row
carries its evidence (requests, closed bound, asked at, source).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from binance_extractor import clock, sources
from binance_extractor.catalog import Shape
from binance_extractor.exchange_clock import closed_before
from binance_extractor.gaps.models import Hole, Scan, iso_ms
from binance_extractor.gaps.settings import GapSettings
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import GAP_CONFIRMED, GAP_PENDING, GapRecord, Sink, stores
from binance_extractor.timeutil import dt_to_ms, ms_to_dt

log = logging.getLogger(__name__)

CONFIRMED = GAP_CONFIRMED
PENDING = GAP_PENDING  # reported as "not fillable yet"
SERVED = "served"  # REST answered rows inside the hole: they were written, the hole is judged again
NOT_FILLABLE_YET = "not_fillable_yet"  # the status name in reports, the CLI's JSON and the data-health page


@dataclass(frozen=True)
class Evidence:
    """What one ask proved: ``source`` asked (``rest``; ``archive`` = REST was not asked), the ``requests`` it took,
    the closed bound on the exchange's clock it was asked under (None: not asked), when, and how many rows of the
    answer the stores lacked (``new_rows``: written, so the hole was not exchange-side after all)."""

    source: str
    requests: int
    bound_ms: int | None
    asked_at: datetime
    new_rows: int = 0
    resumed: bool = True  # the stores hold a row after the hole older than the settle instant (rule 4)


@dataclass(frozen=True)
class Verdict:
    """The rule's answer for one hole (or the part of it the rule could decide)."""

    hole: Hole
    status: str  # CONFIRMED, PENDING or SERVED
    reason: str | None
    evidence: Evidence

    def record(self, checked_by: str, method: str) -> GapRecord:
        ev = self.evidence
        return GapRecord(
            table=self.hole.table,
            symbol=self.hole.symbol,
            gap_start=ms_to_dt(self.hole.start_ms),
            gap_end=ms_to_dt(self.hole.end_ms),
            checked_by=checked_by,
            method=method,
            requests=ev.requests,
            confirmed_at=clock.now(),
            status=self.status,
            bound=None if ev.bound_ms is None else ms_to_dt(ev.bound_ms),
            asked_at=ev.asked_at,
            source=ev.source,
            reason=self.reason,
        )

    def to_dict(self) -> dict[str, Any]:
        """The hole as reports show a "not fillable yet" one: its range, why, and what was asked."""
        ev = self.evidence
        bound = None if ev.bound_ms is None else iso_ms(ev.bound_ms)
        evidence = {"source": ev.source, "requests": ev.requests, "bound": bound, "new_rows": ev.new_rows}
        evidence["resumed"] = ev.resumed
        return {**self.hole.to_dict(), "status": _status_name(self.status), "reason": self.reason, "evidence": evidence}


def _status_name(status: str) -> str:
    return NOT_FILLABLE_YET if status in (PENDING, SERVED) else status


def judge(hole: Hole, evidence: Evidence, settle_ms: int) -> list[Verdict]:
    """The rule (module docstring), pure: the one verdict for ``hole`` on ``evidence``."""
    if evidence.source != "rest" or evidence.bound_ms is None:
        reason = "only the archive was asked (--source archive): the archive alone proves no hole; REST decides"
        return [Verdict(hole, PENDING, reason, evidence)]
    if evidence.new_rows:
        reason = f"the exchange served {evidence.new_rows} row(s) inside it when asked (stored); judged again"
        return [Verdict(hole, SERVED, reason, evidence)]
    bound = evidence.bound_ms
    settled = bound - max(0, settle_ms)
    if hole.end_ms > bound:
        reason = f"not closed on the exchange when asked (closed bound {iso_ms(bound)}); judged again"
    elif hole.end_ms > settled:
        reason = f"ended less than ledger_settle ({settle_ms // 60_000} min) before the exchange's closed bound"
        reason += f" {iso_ms(bound)}: a candle published late is still fetched; judged again"
    elif not evidence.resumed:
        reason = f"nothing stored after it before {iso_ms(settled)} (closed bound - ledger_settle): the incident may"
        reason += " still be going on, or ended less than ledger_settle ago; judged again"
    else:
        return [Verdict(hole, CONFIRMED, None, evidence)]
    return [Verdict(hole, PENDING, reason, evidence)]


def ask(hole: Hole, sinks: Sequence[Sink], client: Any, fetch: Hole | None = None) -> Evidence:
    """Ask REST for the whole hole (``fetch``: a wider range around it, for funding) under one closed bound taken
    first; write what it answers to every sink (idempotent upserts) and count the rows the stores lacked."""

    rng = fetch or hole
    bound = closed_before(client)
    asked_at = clock.now()
    dataset, symbol = hole.dataset, hole.symbol
    lo, hi = ms_to_dt(rng.start_ms), ms_to_dt(rng.end_ms)
    readable = stores(sinks)
    before = [s.count(dataset, symbol, lo, hi) for s in readable]
    sent = getattr(client, "requests_sent", 0)
    batches = sources.batches(dataset, client, symbol, rng.start_ms, rng.end_ms, source="rest", now_ms=bound)
    for batch in batches:
        for sink in sinks:
            sink.write(dataset, batch)
    new_rows = max((s.count(dataset, symbol, lo, hi) - n for s, n in zip(readable, before, strict=True)), default=0)
    requests = getattr(client, "requests_sent", 0) - sent
    return Evidence("rest", requests, bound, asked_at, max(0, new_rows))


def check(
    hole: Hole,
    sinks: Sequence[Sink],
    client: Any,
    *,
    source: str = "rest",
    settings: GapSettings | None = None,
    fetch: Hole | None = None,
) -> list[Verdict]:
    """Judge ``hole`` (still open after a fill from ``source``): ask REST unless only the archive may be asked."""
    settings = settings or GapSettings()
    if hole.dataset.entry.rest_days is not None and beyond_rest_horizon(hole, client):
        # openInterestHist serves only the latest 30 days: REST cannot be asked, so no proof is possible; the
        # archive's metrics files (read by the fill) are the only source and the hole stays open
        evidence = Evidence("archive", 0, None, clock.now())
        reason = "older than the 30 days openInterestHist serves: only the archive's metrics files could fill it"
        verdicts = [Verdict(hole, PENDING, reason, evidence)]
    elif source == "archive" and hole.dataset.timeframe is not None:
        evidence = Evidence("archive", 0, None, clock.now())
        verdicts = judge(hole, evidence, settings.ledger_settle_ms)
    else:
        evidence = ask(hole, sinks, client, fetch)
        if evidence.bound_ms is not None and resumes_after(hole):
            settled = evidence.bound_ms - max(0, settings.ledger_settle_ms)
            evidence = replace(evidence, resumed=resumed_before(hole, sinks, settled))
        verdicts = judge(hole, evidence, settings.ledger_settle_ms)
    for v in verdicts:
        log.info(
            "%s: %s%s (%d request(s), closed bound %s)",
            v.hole.describe(),
            "confirmed exchange-side" if v.status == CONFIRMED else NOT_FILLABLE_YET.replace("_", " "),
            f": {v.reason}" if v.reason else "",
            evidence.requests,
            "-" if evidence.bound_ms is None else iso_ms(evidence.bound_ms),
        )
    return verdicts


def resumes_after(hole: Hole) -> bool:
    """Whether the hole's end may be only where detection stopped looking, so rule 4 reads what follows it: a
    time grid's holes and funding's (a weekly chunk's end). An aggregate-trade hole ends at the stored trade after
    it (its id follows), so its end is where the exchange resumed."""
    return hole.dataset.grid is not None or hole.dataset.shape is Shape.EVENTS


def resumed_before(hole: Hole, sinks: Sequence[Sink], settled_ms: int) -> bool:
    """Whether every store holds a row of the hole's symbol in ``[hole.end, settled_ms)``: the exchange resumed
    after the hole at least ``ledger_settle`` before the closed bound (a hole's end may be only a chunk's end or
    the detection's bound, with the outage still going on). A hole between two stored rows ends at the later one,
    which this finds."""
    readable = stores(sinks)
    if settled_ms <= hole.end_ms or not readable:
        return False
    lo, hi = ms_to_dt(hole.end_ms), ms_to_dt(settled_ms)
    return all(s.count(hole.dataset, hole.symbol, lo, hi) > 0 for s in readable)


def beyond_rest_horizon(hole: Hole, client: Any) -> bool:
    """Whether an open-interest hole starts before the oldest time REST still serves (exchange time)."""
    from binance_extractor import open_interest

    return hole.start_ms < open_interest.rest_floor(closed_before(client))


def record(verdicts: Sequence[Verdict], sinks: Sequence[Sink], checked_by: str, method: str) -> None:
    """Write confirmed and pending verdicts to every store's ledger (a served hole is judged again, not recorded)."""
    for v in verdicts:
        if v.status == SERVED:
            continue
        row = v.record(checked_by, method)
        for store in stores(sinks):
            store.record_gap(row)


def pending_records(sinks: Sequence[Sink], dataset: Dataset, symbol: str) -> list[GapRecord]:
    """The "not fillable yet" rows of (dataset, symbol) across the stores."""
    out: dict[tuple[datetime, datetime], GapRecord] = {}
    for store in stores(sinks):
        for g in store.gap_records(dataset, symbol):
            if g.status == PENDING:
                out.setdefault((g.gap_start, g.gap_end), g)
    return sorted(out.values(), key=lambda g: g.gap_start)


def pending_of(hole: Hole, pending: Sequence[GapRecord]) -> GapRecord | None:
    """The pending row a detected hole overlaps (it is then "not fillable yet", not simply open), if any."""
    for g in pending:
        if dt_to_ms(g.gap_start) < hole.end_ms and hole.start_ms < dt_to_ms(g.gap_end):
            return g
    return None


def prune_pending(sinks: Sequence[Sink], scans: Sequence[Scan]) -> int:
    """Drop the pending rows inside a scanned range that no detected hole overlaps any more (filled since, by an
    incremental run or the tail), so no stale "not fillable yet" is shown; returns how many."""
    dropped = 0
    for scan in scans:
        holes = [*scan.holes, *scan.skipped]
        for store in stores(sinks):
            for g in store.gap_records(scan.dataset, scan.symbol):
                lo, hi = dt_to_ms(g.gap_start), dt_to_ms(g.gap_end)
                inside = scan.start_ms <= lo and hi <= scan.end_ms
                if g.status == PENDING and inside and not any(h.start_ms < hi and lo < h.end_ms for h in holes):
                    store.delete_gap(scan.dataset, g.symbol, g.gap_start)
                    dropped += 1
    return dropped


def forget_pending(sinks: Sequence[Sink], dataset: Dataset, symbol: str, start_ms: int, end_ms: int) -> None:
    """Drop the pending rows overlapping ``[start_ms, end_ms)``: the holes there are about to be judged again."""
    lo, hi = ms_to_dt(start_ms), ms_to_dt(end_ms)
    for store in stores(sinks):
        for g in store.gap_records(dataset, symbol):
            if g.status == PENDING and g.gap_start < hi and lo < g.gap_end:
                store.delete_gap(dataset, symbol, g.gap_start)
