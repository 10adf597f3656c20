"""Reading one archive file: its ``.CHECKSUM``, its zip and its CSV rows (ms or us timestamps).

Why apart: the byte-level checks are what make a corrupt or truncated file fail loudly instead of being stored;
they need no network and no thread pool.
"""

from __future__ import annotations

import csv
import io
import zipfile
from itertools import pairwise

from binance_extractor.errors import ExtractorError, ValidationError
from binance_extractor.models import Kline
from binance_extractor.timeframes import Timeframe

MICROS_THRESHOLD = 10**14  # epoch ms stay below this until year 5138; epoch us are above it since 1973


class ArchiveError(ExtractorError):
    """An archive file that stayed corrupt, truncated or unreachable after retries (never written)."""

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"archive file {filename}: {reason}")


class _BadFile(Exception):
    """One failed attempt at a file; retried, then turned into ``ArchiveError``."""


class _Unreachable(_BadFile):
    """The host did not answer (connection refused/reset, timeout, egress blocked)."""


def _parse_checksum(text: str, name: str) -> str:
    parts = text.split()
    if len(parts) != 2 or len(parts[0]) != 64 or parts[1].lstrip("*") != name:
        raise _BadFile(f"malformed CHECKSUM file {text[:100]!r}")
    return parts[0].lower()


def _diagnose(body: bytes, expected: str, got: str) -> str:
    """Name the failure precisely: a cut-off download and silently wrong bytes call for different fixes."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            bad = zf.testzip()
    except zipfile.BadZipFile:
        return f"truncated or not a zip ({len(body)} bytes; sha256 {got[:12]}... != {expected[:12]}...)"
    detail = f"; CRC error in {bad}" if bad else ""
    return f"checksum mismatch (sha256 {got[:12]}... != {expected[:12]}...){detail}"


def read_zip_bytes(body: bytes) -> bytes:
    """The bytes of the zip's one CSV member (a bad zip is a failed attempt: retried, then reported)."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            members = [n for n in zf.namelist() if n.endswith(".csv")]
            if len(members) != 1:
                raise _BadFile(f"expected one CSV in the zip, found {len(members)}")
            return zf.read(members[0])
    except (zipfile.BadZipFile, EOFError) as exc:
        raise _BadFile(f"unreadable zip: {exc}") from None


def read_zip(body: bytes) -> str:
    """The text of the zip's one CSV member (a bad zip is a failed attempt: retried, then reported)."""
    try:
        return read_zip_bytes(body).decode("ascii")
    except UnicodeDecodeError as exc:
        raise _BadFile(f"unreadable zip: {exc}") from None


def parse_rows(text: str, lo_ms: int, hi_ms: int, what: str = "") -> tuple[list[list[str]], list[int]]:
    """Archive CSV (with or without header; ms or us timestamps) -> rows in ``[lo_ms, hi_ms)`` with ms times.

    Rows come back sorted by open time, each open time once, with their open times; nothing validated yet.
    """
    rows: list[list[str]] = []
    opens: list[int] = []
    seen: set[int] = set()
    for i, row in enumerate(csv.reader(io.StringIO(text))):
        if not row:
            continue
        first = row[0]
        if not first.isdigit():
            if i == 0:
                continue  # header row: open_time,open,high,...
            raise ValidationError(f"Kline rejected ({what}): malformed archive row {row!r:.120}")
        open_ms = int(first)
        if open_ms > MICROS_THRESHOLD:  # microseconds: exact integer conversion, no float
            open_ms //= 1000
            row[0] = str(open_ms)
            row[6] = str(int(row[6]) // 1000)
        if open_ms < lo_ms or open_ms >= hi_ms or open_ms in seen:
            continue
        seen.add(open_ms)
        opens.append(open_ms)
        rows.append(row)
    if any(b <= a for a, b in pairwise(opens)):
        order = sorted(range(len(opens)), key=opens.__getitem__)
        rows = [rows[j] for j in order]
        opens = [opens[j] for j in order]
    return rows, opens


def to_klines(symbol: str, interval: str, rows: list[list[str]]) -> list[Kline]:
    """Validate raw archive rows through the same model as REST rows."""
    build = Kline.from_rest
    return [build(symbol, interval, row) for row in rows]


def parse_csv(text: str, symbol: str, interval: str, lo_ms: int, hi_ms: int) -> tuple[list[Kline], list[int]]:
    """Validated candles of an archive CSV in ``[lo_ms, hi_ms)`` and their open times (ms)."""
    rows, opens = parse_rows(text, lo_ms, hi_ms, f"{symbol} {interval}")
    return to_klines(symbol, interval, rows), opens


def parse_zip(body: bytes, symbol: str, interval: str, lo_ms: int, hi_ms: int) -> tuple[list[Kline], list[int]]:
    """Validated candles of an archive zip in ``[lo_ms, hi_ms)`` and their open times (ms)."""
    return parse_csv(read_zip(body), symbol, interval, lo_ms, hi_ms)


def missing_ranges(tf: Timeframe, lo_ms: int, hi_ms: int, have: list[int]) -> list[tuple[int, int]]:
    """Half-open sub-ranges of ``[lo_ms, hi_ms)`` whose expected candle open times are absent from ``have``."""
    first, step = tf.ceil_ms(lo_ms), tf.ms
    complete = len(have) == tf.count_between(lo_ms, hi_ms) and (not have or have[0] == first)
    if complete and all(b - a == step for a, b in pairwise(have)):
        return []  # the common case: a complete file
    got = set(have)
    out: list[tuple[int, int]] = []
    run_start: int | None = None
    for t in range(first, hi_ms, step):
        if t in got:
            if run_start is not None:
                out.append((run_start, t))
                run_start = None
        elif run_start is None:
            run_start = t
    if run_start is not None:
        out.append((run_start, hi_ms))
    return out
