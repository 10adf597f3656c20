"""Repair: refetch each hole of a chunk through the pipeline, re-detect, judge what is left by the evidence rule."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from binance_extractor.catalog import Shape
from binance_extractor.errors import ExtractorError
from binance_extractor.gaps import evidence
from binance_extractor.gaps.detection import funding_intervals, funding_ms_of, redetect
from binance_extractor.gaps.models import Chunk, ChunkResult, Hole
from binance_extractor.gaps.settings import FUNDING_DEFAULT_MS, GapSettings
from binance_extractor.masking import mask
from binance_extractor.sinks.base import Sink
from binance_extractor.timeutil import ms_to_dt

if TYPE_CHECKING:
    from binance_extractor.pipeline import Job

log = logging.getLogger(__name__)


def _job(hole: Hole, source: str, requested_by: str) -> Job:
    from binance_extractor.pipeline import Job

    kind = hole.dataset.kind
    return Job(
        kind=kind,
        symbol=hole.symbol,
        timeframe=hole.dataset.timeframe,
        start=ms_to_dt(hole.start_ms),
        end=ms_to_dt(hole.end_ms),
        source=source if kind.entry.archive_path else "rest",  # candles and open interest have an archive
        requested_by=requested_by,
    )


def _fetch_range(hole: Hole, chunk: Chunk, settings: GapSettings | None) -> Hole:
    """What to refetch for ``hole`` (already clipped to ``chunk``).

    Klines and agg trades: the hole itself. Funding: a hole is a too-long distance between two stored rows, and a
    chunk boundary (weekly, Monday 00:00 UTC) can cut it so that this chunk's piece holds no funding time at all
    while the missing row sits just past the boundary in the next chunk. Refetching only the piece returns
    nothing, so the piece would be "confirmed" exchange-side although the next chunk fills it. Refetching up to
    one longest interval (plus tolerance) beyond the piece, inside the hole's context, brings in the neighbouring
    rows, so re-detection judges the piece exactly as a whole-hole refetch would (writes are idempotent upserts).
    """
    if hole.dataset.shape is not Shape.EVENTS:
        return hole
    margin = FUNDING_DEFAULT_MS + (settings or GapSettings()).funding_tolerance_ms
    start = max(chunk.ctx_start_ms, hole.start_ms - margin)
    end = min(chunk.ctx_end_ms, hole.end_ms + margin)
    return replace(hole, start_ms=start, end_ms=end)


def _one_line(exc: BaseException) -> str:
    """A chunk result's ``error`` (XCom, the report): one line, secrets masked."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return mask(text if isinstance(exc, ExtractorError) else f"{type(exc).__name__}: {text}")[:500]


def _overlaps(hole: Hole, others: Sequence[Hole]) -> bool:
    return any(o.start_ms < hole.end_ms and hole.start_ms < o.end_ms for o in others)


def fill_chunk(
    chunk: Chunk,
    sinks: Sequence[Sink],
    client: Any,
    *,
    source: str = "auto",
    requested_by: str = "gap-filler",
    settings: GapSettings | None = None,
) -> ChunkResult:
    """Re-detect, refetch each hole (``pipeline.run_job``: the client's retries), re-detect, judge the rest.

    A hole still open after a fill that succeeded is judged by the ledger's one evidence rule
    (``evidence.check``: REST asked for all of it below the exchange's closed bound, nothing served, settled):
    confirmed holes go into every store's ledger with their evidence, the others are recorded pending and
    reported "not fillable yet". If the fill (or the ask) failed, nothing is judged: the holes stay open for the
    closure check to report.
    """
    from binance_extractor.pipeline import run_job

    settings = settings or GapSettings()
    result = ChunkResult(chunk)
    funding_ms = None
    if chunk.dataset.shape is Shape.EVENTS and hasattr(client, "funding_intervals"):
        funding_ms = funding_ms_of(funding_intervals(client), chunk.symbol)  # the tail is judged by it
    result.funding_ms = funding_ms
    before = redetect(chunk, sinks, settings, funding_ms)
    result.found = len(before)
    evidence.forget_pending(sinks, chunk.dataset, chunk.symbol, chunk.start_ms, chunk.end_ms)  # judged again now
    if not before:
        return result
    sent = getattr(client, "requests_sent", 0)
    for hole in before:
        try:
            res = run_job(_job(_fetch_range(hole, chunk, settings), source, requested_by), sinks, client)
            result.rows_extracted += res.rows_extracted
            result.rows_written += res.rows_written
        except Exception as exc:
            result.error = _one_line(exc)
            log.warning("gap fill failed for %s: %s", hole.describe(), result.error)
            break
    after = redetect(chunk, sinks, settings, funding_ms)
    verdicts: list[evidence.Verdict] = []
    if result.error is None:
        try:
            for hole in after:
                fetch = _fetch_range(hole, chunk, settings)
                verdicts += evidence.check(hole, sinks, client, source=source, settings=settings, fetch=fetch)
        except Exception as exc:
            result.error = _one_line(exc)
            log.warning("asking REST for the holes of %s failed: %s", chunk.describe(), result.error)
    result.requests = getattr(client, "requests_sent", 0) - sent
    served = [v.hole for v in verdicts if v.status == evidence.SERVED]
    if served:  # the ask stored rows: what is left of those holes is judged again next run
        after = redetect(chunk, sinks, settings, funding_ms)
    result.filled = sum(1 for h in before if not _overlaps(h, after))
    if result.error is not None:
        result.remaining = after
        return result
    judged = [v for v in verdicts if v.status != evidence.SERVED]
    for hole in after:
        if _overlaps(hole, served):
            again = next(v for v in verdicts if v.status == evidence.SERVED and _overlaps(hole, [v.hole]))
            judged.append(evidence.Verdict(hole, evidence.PENDING, again.reason, again.evidence))
    method = f"refetch:{source}" if chunk.dataset.kind.entry.archive_path else "refetch:rest"
    evidence.record(judged, sinks, requested_by, method)
    result.confirmed = sum(1 for v in judged if v.status == evidence.CONFIRMED)
    result.pending = [v.to_dict() for v in judged if v.status == evidence.PENDING]
    return result


def fill_chunks(
    chunks: Sequence[Chunk],
    sinks: Sequence[Sink],
    client: Any,
    *,
    source: str = "auto",
    requested_by: str = "gap-filler",
    settings: GapSettings | None = None,
) -> list[ChunkResult]:
    results = []
    for chunk in chunks:
        res = fill_chunk(chunk, sinks, client, source=source, requested_by=requested_by, settings=settings)
        if res.found:
            log.info(
                "%s: %d hole(s), %d filled, %d confirmed exchange-side, %d not fillable yet, %d open, %d rows, "
                "%d requests",
                chunk.describe(),
                res.found,
                res.filled,
                res.confirmed,
                len(res.pending),
                len(res.remaining),
                res.rows_written,
                res.requests,
            )
        results.append(res)
    return results
