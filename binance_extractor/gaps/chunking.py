"""Interval arithmetic on holes: weekly chunks, task groups, merging and subtracting the ledger."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from binance_extractor.catalog import Shape
from binance_extractor.gaps.models import Chunk, Hole
from binance_extractor.gaps.settings import MAX_MAP_LENGTH, MONDAY_MS, GapSettings


def _next_boundary(t: int, step: int) -> int:
    """The first chunk boundary after ``t``; boundaries are multiples of ``step`` from Monday 1970-01-05."""
    return t + step - (t - MONDAY_MS) % step


def chunk_holes(holes: Iterable[Hole], chunk_ms: int) -> list[Chunk]:
    """Split every kline and funding hole at the weekly (``chunk_ms``) boundaries; kline chunks stay aligned to
    candle opens.

    An agg-trade hole always stays one chunk, whatever its length: its missing ids have no time grid, so a piece
    cut at a boundary cannot tell ids that belong after the boundary from ids the exchange never had (the piece
    would be "confirmed" exchange-side before the next chunk fills it). Splitting would not make it faster
    either: agg-trade pages cost 20 weight each, so their refetch is paced by the shared IP budget, not by tasks.
    """
    chunks: list[Chunk] = []
    for hole in sorted(holes):
        tf = hole.dataset.grid
        if hole.dataset.shape is Shape.IDS:
            chunks.append(
                Chunk(hole.dataset, hole.symbol, hole.start_ms, hole.end_ms, hole.ctx_start_ms, hole.ctx_end_ms)
            )
            continue
        cursor = hole.start_ms
        while cursor < hole.end_ms:
            nxt = min(hole.end_ms, _next_boundary(cursor, chunk_ms))
            if tf is not None:
                nxt = min(hole.end_ms, tf.ceil_ms(nxt))
            if nxt <= cursor:
                nxt = hole.end_ms
            if tf is not None:
                chunks.append(Chunk(hole.dataset, hole.symbol, cursor, nxt, cursor, nxt))
            else:
                chunks.append(Chunk(hole.dataset, hole.symbol, cursor, nxt, hole.ctx_start_ms, hole.ctx_end_ms))
            cursor = nxt
    return chunks


def group_chunks(chunks: Sequence[Chunk], max_tasks: int) -> list[list[Chunk]]:
    """At most ``max_tasks`` groups (mapped task instances) of consecutive chunks, sizes differing by <= 1."""
    if not chunks:
        return []
    cap = max(1, min(max_tasks, MAX_MAP_LENGTH))
    n_groups = min(cap, len(chunks))
    size, extra = divmod(len(chunks), n_groups)
    groups: list[list[Chunk]] = []
    i = 0
    for g in range(n_groups):
        take = size + (1 if g < extra else 0)
        groups.append(list(chunks[i : i + take]))
        i += take
    return groups


def _subtract(lo: int, hi: int, known: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[lo, hi)`` minus the union of ``known`` ranges."""
    out: list[tuple[int, int]] = []
    cursor = lo
    for s, e in sorted(known):
        if e <= cursor or s >= hi:
            continue
        if s > cursor:
            out.append((cursor, min(s, hi)))
        cursor = max(cursor, e)
        if cursor >= hi:
            break
    if cursor < hi:
        out.append((cursor, hi))
    return out


def merge(holes: Iterable[Hole]) -> list[Hole]:
    """Union of overlapping holes of the same (dataset, symbol) (several sinks may miss the same rows)."""
    out: list[Hole] = []
    for h in sorted(holes):
        last = out[-1] if out else None
        if last and (last.dataset, last.symbol) == (h.dataset, h.symbol) and h.start_ms <= last.end_ms:
            out[-1] = Hole(
                h.dataset,
                h.symbol,
                last.start_ms,
                max(last.end_ms, h.end_ms),
                max(last.missing, h.missing),
                min(last.ctx_start_ms, h.ctx_start_ms),
                max(last.ctx_end_ms, h.ctx_end_ms),
            )
        else:
            out.append(h)
    return out


def minus_known(holes: Sequence[Hole], known: Sequence[tuple[int, int]]) -> tuple[list[Hole], int]:
    """Holes outside the ledger's confirmed exchange-side ranges; also how many holes the ledger covered fully."""
    if not known:
        return list(holes), 0
    out: list[Hole] = []
    covered = 0
    for h in holes:
        parts = _subtract(h.start_ms, h.end_ms, known)
        if not parts:
            covered += 1
            continue
        if parts == [(h.start_ms, h.end_ms)]:
            out.append(h)
            continue
        tf = h.dataset.grid
        for s, e in parts:
            missing = tf.count_between(s, e) if tf is not None else h.missing
            if missing > 0:
                ctx = (s, e) if tf is not None else (h.ctx_start_ms, h.ctx_end_ms)
                out.append(Hole(h.dataset, h.symbol, s, e, missing, *ctx))
    return out, covered


def plan_groups(holes: Iterable[Hole], settings: GapSettings) -> list[list[Chunk]]:
    """Holes -> weekly chunks -> at most ``max_mapped_tasks`` groups (one mapped task instance each)."""
    return group_chunks(chunk_holes(holes, settings.chunk_ms), settings.max_mapped_tasks)
