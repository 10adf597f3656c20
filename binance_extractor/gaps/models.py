"""Holes, chunks, scans and chunk results: plain values that travel through XCom as dicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from binance_extractor.errors import InputError
from binance_extractor.gaps.settings import gap_dataset
from binance_extractor.kinds import Dataset
from binance_extractor.symbols import is_symbol
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt, parse_time


def iso_ms(ms: int) -> str:
    return iso(ms_to_dt(ms))


class _SymbolRange:
    """What holes and chunks share: one dataset's symbol over ``[start_ms, end_ms)``."""

    dataset: Dataset
    symbol: str
    start_ms: int
    end_ms: int

    @property
    def table(self) -> str:
        return self.dataset.table

    def describe(self) -> str:
        return f"{self.table} {self.symbol} [{iso_ms(self.start_ms)}, {iso_ms(self.end_ms)})"

    def range_dict(self) -> dict[str, Any]:
        """The fields every report row starts with: table, symbol and the range as ISO text."""
        return {"table": self.table, "symbol": self.symbol, "start": iso_ms(self.start_ms), "end": iso_ms(self.end_ms)}


@dataclass(frozen=True, order=True)
class Hole(_SymbolRange):
    """Missing rows of one symbol: refetch ``[start_ms, end_ms)``; ``ctx`` is the range that re-detects it."""

    dataset: Dataset
    symbol: str
    start_ms: int
    end_ms: int
    missing: int
    ctx_start_ms: int
    ctx_end_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.range_dict(),
            "missing": self.missing,
            "context": [iso_ms(self.ctx_start_ms), iso_ms(self.ctx_end_ms)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hole:
        ctx = data.get("context") or [data["start"], data["end"]]
        return cls(
            gap_dataset(str(data["table"])),
            str(data["symbol"]),
            dt_to_ms(parse_time(str(data["start"]))),
            dt_to_ms(parse_time(str(data["end"]))),
            int(data.get("missing") or 0),
            dt_to_ms(parse_time(str(ctx[0]))),
            dt_to_ms(parse_time(str(ctx[1]))),
        )


@dataclass(frozen=True, order=True)
class Chunk(_SymbolRange):
    """One unit of repair: refetch the holes found in ``[start_ms, end_ms)`` (re-detected over ``ctx``)."""

    dataset: Dataset
    symbol: str
    start_ms: int
    end_ms: int
    ctx_start_ms: int
    ctx_end_ms: int

    def spec(self) -> str:
        """``TABLE/SYMBOL/START/END[/CTX_START/CTX_END]``: the CLI's ``--chunk`` value."""
        parts = [self.table, self.symbol, iso_ms(self.start_ms), iso_ms(self.end_ms)]
        if (self.ctx_start_ms, self.ctx_end_ms) != (self.start_ms, self.end_ms):
            parts += [iso_ms(self.ctx_start_ms), iso_ms(self.ctx_end_ms)]
        return "/".join(parts)

    @classmethod
    def parse(cls, spec: str) -> Chunk:
        parts = spec.strip().split("/")
        if len(parts) not in (4, 6):
            raise InputError(f"malformed chunk {spec!r}: use TABLE/SYMBOL/START/END[/CTX_START/CTX_END]")
        dataset, symbol = gap_dataset(parts[0]), parts[1].upper()
        if not is_symbol(symbol):
            raise InputError(f"malformed symbol in chunk {spec!r}")
        times = [dt_to_ms(parse_time(p)) for p in parts[2:]]
        start, end = times[0], times[1]
        ctx_start, ctx_end = (times[2], times[3]) if len(times) == 4 else (start, end)
        if end <= start or ctx_end <= ctx_start or ctx_start > start or ctx_end < end:
            raise InputError(f"chunk {spec!r}: need START < END inside CTX_START < CTX_END")
        return cls(dataset, symbol, start, end, ctx_start, ctx_end)


@dataclass
class Scan(_SymbolRange):
    """What detection found for one (dataset, symbol), merged over the database sinks."""

    dataset: Dataset
    symbol: str
    start_ms: int
    end_ms: int
    stored: int
    holes: list[Hole] = field(default_factory=list)
    skipped: list[Hole] = field(default_factory=list)  # outside the min/max size filter: reported, not filled
    known: int = 0  # holes the ledger already lists as exchange-side

    @property
    def missing(self) -> int:
        return sum(h.missing for h in self.holes) + sum(h.missing for h in self.skipped)

    @property
    def completeness(self) -> float:
        total = self.stored + self.missing
        return 1.0 if total == 0 else self.stored / total

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.range_dict(),
            "stored": self.stored,
            "holes": len(self.holes),
            "skipped": len(self.skipped),
            "known_exchange_side": self.known,
            "missing": self.missing,
            "completeness": round(self.completeness, 6),
        }


@dataclass
class ChunkResult:
    """One chunk's repair: holes before, closed, confirmed exchange-side, not fillable yet (``pending``: each hole's
    dict with its reason and evidence), still open (``remaining``: the fill failed); requests sent."""

    chunk: Chunk
    found: int = 0
    filled: int = 0
    confirmed: int = 0
    remaining: list[Hole] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    rows_extracted: int = 0
    rows_written: int = 0
    requests: int = 0
    error: str | None = None
    funding_ms: int | None = None  # the contract's funding interval the fill judged the tail by (verify reuses it)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk.spec(),
            "table": self.chunk.table,
            "symbol": self.chunk.symbol,
            "found": self.found,
            "filled": self.filled,
            "confirmed": self.confirmed,
            "remaining": [h.to_dict() for h in self.remaining],
            "pending": list(self.pending),
            "rows_extracted": self.rows_extracted,
            "rows_written": self.rows_written,
            "requests": self.requests,
            "error": self.error,
            "funding_ms": self.funding_ms,
        }
