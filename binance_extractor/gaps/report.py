"""Closure check, the per-symbol report, its log lines and metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from binance_extractor import telemetry
from binance_extractor.gaps.detection import redetect
from binance_extractor.gaps.evidence import NOT_FILLABLE_YET
from binance_extractor.gaps.models import Chunk, Hole, Scan
from binance_extractor.gaps.settings import STATES, GapClosureError, GapSettings
from binance_extractor.sinks.base import Sink


def verify(
    chunks: Sequence[Chunk],
    sinks: Sequence[Sink],
    results: Iterable[Mapping[str, Any]] = (),
    settings: GapSettings | None = None,
) -> list[dict[str, Any]]:
    """Re-detect every chunk; the holes still open (not in the ledger), each with its ``status`` and why.

    ``not_fillable_yet``: the fill succeeded and the evidence rule (``gaps/evidence.py``) could not confirm the hole
    yet (the chunk's result lists it as pending): reported, not a failure. ``open``: the fill failed, never ran, or
    left a hole nobody judged: the closure check fails on it (``failures``, ``raise_if_open``).

    A funding chunk is re-detected with the contract's funding interval its fill used (the result's
    ``funding_ms``), as detection and the scan after the fill judge it: with the 8 h default, a missing tail of an
    hourly contract went unseen here, so the run neither failed nor listed it (simulation seeds 164 and 196).
    """
    by_chunk = {r["chunk"]: r for r in results if r}
    open_holes: list[dict[str, Any]] = []
    for chunk in chunks:
        result = by_chunk.get(chunk.spec())
        if result is None:
            reason = "no fill result (its task failed or did not run)"
        elif result.get("error"):
            reason = f"fill failed: {result['error']}"
        else:
            reason = "still open after a successful fill"
        judged = [] if result is None or result.get("error") else list(result.get("pending") or [])
        funding_ms = result.get("funding_ms") if result is not None else None  # judged as the fill judged it
        for hole in redetect(chunk, sinks, settings, funding_ms):
            why = next((p for p in judged if _overlaps(hole, Hole.from_dict(p))), None)
            if why is not None:
                open_holes.append({**hole.to_dict(), "status": NOT_FILLABLE_YET, "reason": why.get("reason")})
            else:
                open_holes.append({**hole.to_dict(), "status": "open", "reason": reason})
    return open_holes


def _overlaps(a: Hole, b: Hole) -> bool:
    return a.start_ms < b.end_ms and b.start_ms < a.end_ms


def failures(open_holes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The holes that fail the closure check (``verify``'s ``open`` ones; not the "not fillable yet")."""
    return [h for h in open_holes if h.get("status", "open") == "open"]


def closure_message(open_holes: Sequence[Mapping[str, Any]], limit: int = 10) -> str:
    open_holes = failures(open_holes)
    parts = [f"{h['table']} {h['symbol']} [{h['start']}, {h['end']}): {h.get('reason')}" for h in open_holes[:limit]]
    more = f"; and {len(open_holes) - limit} more" if len(open_holes) > limit else ""
    return (
        f"gap closure failed: {len(open_holes)} hole(s) the exchange may have data for are still open: "
        + "; ".join(parts)
        + more
    )


def raise_if_open(open_holes: Sequence[Mapping[str, Any]]) -> None:
    if failures(open_holes):
        raise GapClosureError(closure_message(open_holes))


def build_report(
    before: Sequence[Scan | Mapping[str, Any]],
    results: Iterable[Mapping[str, Any]],
    after: Sequence[Scan],
    open_holes: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Per table and symbol: holes found, filled, confirmed exchange-side, not fillable yet, remaining (open: the
    closure check fails on them), and completeness. ``open``: the failing holes; ``not_fillable_yet``: the holes the
    evidence rule could not confirm yet, each with why."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    results = [r for r in results if r]
    waiting = [h for h in open_holes if h.get("status") == NOT_FILLABLE_YET]
    if not open_holes:  # no closure check was run: the chunks' own verdicts
        waiting = [p for r in results if not r.get("error") for p in r.get("pending") or []]

    def entry(table: str, symbol: str) -> dict[str, Any]:
        key = (table, symbol)
        if key not in rows:
            rows[key] = {
                "table": table,
                "symbol": symbol,
                "found": 0,
                "filled": 0,
                "confirmed": 0,
                "not_fillable_yet": 0,
                "remaining": 0,
                "skipped": 0,
                "known_exchange_side": 0,
                "missing_before": 0,
                "missing_after": 0,
                "rows_written": 0,
                "requests": 0,
                "completeness": None,
            }
        return rows[key]

    for s in before:
        d = s.to_dict() if isinstance(s, Scan) else s  # detect's XCom carries Scan.to_dict()
        e = entry(str(d["table"]), str(d["symbol"]))
        e["found"] += int(d["holes"])
        e["skipped"] += int(d["skipped"])
        e["missing_before"] += int(d["missing"])
    for r in results:
        e = entry(str(r["table"]), str(r["symbol"]))
        for k in ("filled", "confirmed", "rows_written", "requests"):
            e[k] += int(r.get(k) or 0)
        if not before:  # chunk mode: what the chunks re-detected is what was found
            e["found"] += int(r.get("found") or 0)
            e["remaining"] += len(r.get("remaining") or [])
    for h in waiting:
        entry(str(h["table"]), str(h["symbol"]))["not_fillable_yet"] += 1
    for s in after:
        e = entry(s.table, s.symbol)
        mine = [Hole.from_dict(h) for h in waiting if (h["table"], h["symbol"]) == (s.table, s.symbol)]
        e["remaining"] += sum(1 for h in s.holes if not any(_overlaps(h, w) for w in mine))
        e["known_exchange_side"] = s.known
        e["missing_after"] += s.missing
        e["completeness"] = round(s.completeness, 6)
    per = sorted(rows.values(), key=lambda e: (e["table"], e["symbol"]))
    totals = {k: sum(e[k] for e in per) for k in (*STATES, "rows_written")}
    totals["requests"] = sum(e["requests"] for e in per)
    worst = min((e["completeness"] for e in per if e["completeness"] is not None), default=1.0)
    return {
        "totals": {**totals, "min_completeness": worst},
        "symbols": per,
        "open": failures(open_holes),
        "not_fillable_yet": list(waiting),
    }


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """The report as a small table for the task log."""
    t = report["totals"]
    out = [
        f"gap filler: {t['found']} hole(s) found, {t['filled']} filled, {t['confirmed']} confirmed exchange-side, "
        f"{t.get('not_fillable_yet', 0)} not fillable yet, {t['remaining']} remaining; {t['rows_written']} rows "
        f"written, {t['requests']} requests; lowest completeness {t['min_completeness']:.4%}"
    ]
    for e in report["symbols"]:
        comp = "n/a" if e["completeness"] is None else f"{e['completeness']:.4%}"
        out.append(
            f"  {e['table']:<14} {e['symbol']:<14} found={e['found']:<4} filled={e['filled']:<4} "
            f"confirmed={e['confirmed']:<4} not_fillable_yet={e.get('not_fillable_yet', 0):<4} "
            f"remaining={e['remaining']:<4} skipped={e['skipped']:<4} missing={e['missing_after']:<6} "
            f"completeness={comp}"
        )
    out.extend(f"  OPEN {h['table']} {h['symbol']} [{h['start']}, {h['end']})" for h in report.get("open", []))
    out.extend(
        f"  NOT FILLABLE YET {h['table']} {h['symbol']} [{h['start']}, {h['end']}): {h.get('reason')}"
        for h in report.get("not_fillable_yet", [])
    )
    return out


def emit_metrics(report: Mapping[str, Any]) -> None:
    """``binance.gaps`` (state, table) and ``binance.completeness`` (table, symbol)."""
    counter = telemetry.instruments.counter("binance.gaps", description="holes by state")
    gauge = telemetry.instruments.gauge("binance.completeness", description="stored / expected rows")
    for e in report["symbols"]:
        for state in STATES:
            if e[state]:
                counter.add(e[state], {"state": state, "table": e["table"]})
        if e["completeness"] is not None:
            gauge.set(e["completeness"], {"table": e["table"], "symbol": e["symbol"]})
