"""Bulk kline history from Binance's public data archive (data.binance.vision), REST for the rest.

Why: REST is capped by the IP weight budget (~10k candles/s at best); the archive is not. For the part of a
range that lies before today, whole past months come from monthly zips and the days around them from daily
zips, each verified against its ``.CHECKSUM`` (sha256) before a byte of it is parsed. Whatever the archive
lacks (today, yesterday before publication, a missing file, rows missing inside a file, a file that stays
corrupt) comes from REST in ``auto`` mode, so callers get exactly what ``extract.iter_klines`` would give them:
ordered, non-overlapping batches of validated, closed candles with open_time in ``[start_ms, end_ms)``.

Downloads run in a small thread pool (no weight: archive requests never touch the weight limiter) with at
most ``workers + 1`` files downloaded or buffered at any time, consumed in order.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import logging
import zipfile
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from binance_extractor import config, telemetry, timeutil
from binance_extractor.archive_columns import KlineBlock, parse_block
from binance_extractor.errors import ExtractorError, InputError, ValidationError
from binance_extractor.models import Kline
from binance_extractor.timeframes import Timeframe

log = logging.getLogger(__name__)

SOURCES = ("auto", "rest", "archive")
PREFIX = "data/futures/um"
DAY_MS = 86_400_000
MICROS_THRESHOLD = 10**14  # epoch ms stay below this until year 5138; epoch us are above it since 1973
BATCH_SIZE = 5000  # rows per yielded batch: the sinks' preferred write size
# In ``auto`` mode, fewer archivable candles than this go to REST: a couple of REST pages (limit 499, weight 2)
# cost less than downloading files (e.g. a 5-minute incremental run crossing midnight, or a year of d1).
AUTO_MIN_CANDLES = 1000
# Download threads of a pipeline job: files are small and the path is latency-bound (two requests a file), so more
# in flight than cores pays; at most BULK_WORKERS + 1 files are held at once.
BULK_WORKERS = 8
ATTEMPTS = 3  # downloads per file before a corrupt/truncated/unreachable file is reported
RETRY_WAIT_S = (0.2, 2.0)  # initial and maximum backoff between attempts
TIMEOUT_S = (10.0, 120.0)  # connect, read


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


@dataclass(frozen=True)
class Period:
    """One archive file's period: a calendar month (``monthly``) or a UTC day (``daily``)."""

    kind: str
    label: str  # YYYY-MM or YYYY-MM-DD
    lo_ms: int
    hi_ms: int

    def filename(self, symbol: str, interval: str) -> str:
        return f"{symbol}-{interval}-{self.label}.zip"

    def path(self, symbol: str, interval: str) -> str:
        return f"{PREFIX}/{self.kind}/klines/{symbol}/{interval}/{self.filename(symbol, interval)}"

    def days(self) -> list[Period]:
        """The daily periods of a month (used while its monthly file is not yet published)."""
        return [_day(t) for t in range(self.lo_ms, self.hi_ms, DAY_MS)]


def _day(t_ms: int) -> Period:
    d = datetime.fromtimestamp(t_ms // 1000, UTC)
    return Period("daily", d.strftime("%Y-%m-%d"), t_ms, t_ms + DAY_MS)


def _month_end(t_ms: int) -> int:
    d = datetime.fromtimestamp(t_ms // 1000, UTC)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return timeutil.dt_to_ms(datetime(y, m, 1, tzinfo=UTC))


def plan_periods(start_ms: int, end_ms: int) -> list[Period]:
    """Files covering ``[start_ms, end_ms)``: monthly for months wholly inside, daily for the days around."""
    out: list[Period] = []
    t = start_ms - start_ms % DAY_MS
    while t < end_ms:
        d = datetime.fromtimestamp(t // 1000, UTC)
        if d.day == 1 and t >= start_ms:
            m_end = _month_end(t)
            if m_end <= end_ms:
                out.append(Period("monthly", d.strftime("%Y-%m"), t, m_end))
                t = m_end
                continue
        out.append(_day(t))
        t += DAY_MS
    return out


def archivable(tf: Timeframe) -> bool:
    """Intervals whose candles never straddle a UTC day (so every file holds whole candles)."""
    return not tf.is_monthly and tf.ms <= DAY_MS and DAY_MS % tf.ms == 0


@dataclass
class FilePart:
    """What one file gave: its verified CSV rows in the window (raw: validated by the consumer, in order, so
    the first batch reaches the sink early and validation overlaps writing), or why it gave none."""

    period: Period
    filename: str
    rows: list[list[str]] = field(default_factory=list)
    open_ms: list[int] = field(default_factory=list)
    missing: bool = False
    error: ArchiveError | None = None
    block: KlineBlock | None = None  # columnar mode: the whole file parsed and validated in the fetch thread


@dataclass
class ArchiveStats:
    """Counters of one ``iter_klines`` call (for logs, tests and the benchmark)."""

    files: int = 0
    files_missing: list[str] = field(default_factory=list)
    files_failed: list[str] = field(default_factory=list)
    archive_rows: int = 0
    rest_rows: int = 0
    rest_ranges: list[tuple[int, int]] = field(default_factory=list)
    unfilled_ranges: list[tuple[int, int]] = field(default_factory=list)
    max_outstanding: int = 0


class ArchiveFetcher:
    """Downloads, verifies and parses archive files for one (symbol, interval); thread-safe for GETs."""

    def __init__(
        self, symbol: str, tf: Timeframe, session: requests.Session, base_url: str, columnar: bool = False
    ) -> None:
        self.symbol = symbol
        self.tf = tf
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.columnar = columnar
        self.down = False  # set once a file failed for want of a host: later files fail fast

    def fetch(self, period: Period, lo_ms: int, hi_ms: int) -> list[FilePart]:
        """The period's file (a monthly one not yet published falls back to its daily files)."""
        part = self.fetch_file(period, lo_ms, hi_ms)
        if period.kind == "monthly" and part.missing:
            log.info("monthly archive file %s not published: using daily files", part.filename)
            return [self.fetch_file(day, lo_ms, hi_ms) for day in period.days() if day.hi_ms > lo_ms]
        return [part]

    def fetch_file(self, period: Period, lo_ms: int, hi_ms: int) -> FilePart:
        name = period.filename(self.symbol, self.tf.interval)
        url = f"{self.base_url}/{period.path(self.symbol, self.tf.interval)}"
        if self.down:
            return FilePart(period, name, error=ArchiveError(name, "archive host unreachable (skipped)"))
        retrying = Retrying(
            retry=retry_if_exception_type(_BadFile),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_exponential_jitter(initial=RETRY_WAIT_S[0], max=RETRY_WAIT_S[1], jitter=RETRY_WAIT_S[0]),
            reraise=True,
        )
        with telemetry.span("archive.file", file=name, symbol=self.symbol, interval=self.tf.interval):
            try:
                for attempt in retrying:
                    with attempt:
                        body = self._download(url, name)
                        if body is None:
                            return FilePart(period, name, missing=True)
                        if self.columnar:  # pyarrow releases the GIL: files parse in parallel with writing
                            block = parse_block(read_zip_bytes(body), self.symbol, self.tf.interval, lo_ms, hi_ms)
                            return FilePart(period, name, open_ms=block.open_ms(), block=block)
                        rows, opens = parse_rows(read_zip(body), lo_ms, hi_ms, f"{self.symbol} {self.tf.interval}")
                        return FilePart(period, name, rows, opens)
            except _BadFile as exc:
                if isinstance(exc, _Unreachable):
                    self.down = True
                return FilePart(period, name, error=ArchiveError(name, f"{exc} (after {ATTEMPTS} attempts)"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, url: str) -> requests.Response | None:
        try:
            resp = self.session.get(url, timeout=TIMEOUT_S)
        except requests.ConnectionError as exc:  # refused, reset, DNS, connect timeout: the host is not there
            raise _Unreachable(f"download failed: {type(exc).__name__}") from None
        except (requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:  # slow or cut off: retry
            raise _BadFile(f"download failed: {type(exc).__name__}") from None
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise _BadFile(f"HTTP {resp.status_code}")
        return resp

    def _download(self, url: str, name: str) -> bytes | None:
        """The verified zip bytes, or None when the file (or its checksum) is not published."""
        check = self._get(url + ".CHECKSUM")
        if check is None:
            return None
        expected = _parse_checksum(check.text, name)
        resp = self._get(url)
        if resp is None:
            return None
        body = resp.content
        digest = hashlib.sha256(body).hexdigest()
        if digest != expected:
            raise _BadFile(_diagnose(body, expected, digest))
        return body


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


def _session(workers: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(2, workers + 1))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def iter_klines(
    client: Any,
    symbol: str,
    tf: Timeframe,
    start_ms: int,
    end_ms: int,
    *,
    source: str = "auto",
    now_ms: int | None = None,
    base_url: str | None = None,
    workers: int = 4,
    stats: ArchiveStats | None = None,
    min_candles: int = AUTO_MIN_CANDLES,
    columnar: bool = False,
) -> Iterator[list[Kline] | KlineBlock]:
    """Ordered, non-overlapping batches of validated closed candles in ``[start_ms, end_ms)``.

    ``columnar``: each complete archive file comes as one ``KlineBlock`` (parsed and validated by pyarrow, for
    the sinks' bulk loaders) instead of model batches; REST rows and files merged with REST fills stay models.

    ``source``: ``rest`` (REST only), ``archive`` (archive only: no REST call, missing files are reported
    as warnings, corrupt files raise ``ArchiveError``) or ``auto`` (archive, then REST for what it lacks;
    REST alone when the archive could serve fewer than ``min_candles`` candles).
    """
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
    if workers < 1:
        raise InputError(f"workers must be at least 1, not {workers}")
    stats = stats if stats is not None else ArchiveStats()
    if source == "rest" or (source == "auto" and not archivable(tf)):
        yield from _rest(client, symbol, tf, start_ms, end_ms, now_ms, stats)
        return
    if not archivable(tf):
        raise InputError(f"the archive path supports intervals dividing a day, not {tf.interval}: use --source rest")
    now = now_ms if now_ms is not None else extract_closed_before(client)
    today = now - now % DAY_MS
    if source == "auto" and tf.count_between(start_ms, min(end_ms, today)) < min_candles:
        yield from _rest(client, symbol, tf, start_ms, end_ms, now, stats)
        return
    buffer = _Batcher()
    run = _Run(client, symbol, tf, start_ms, end_ms, source, now, stats)
    session = _session(workers)
    fetcher = ArchiveFetcher(symbol, tf, session, base_url or config.archive_url(), columnar=columnar)
    parts = _prefetch(fetcher, plan_periods(start_ms, min(end_ms, today)), start_ms, end_ms, workers, stats)
    try:
        for part in parts:
            for batch in run.resolve(part):
                if isinstance(batch, KlineBlock):
                    yield from buffer.flush()  # keep the order: models buffered so far go first
                    yield batch
                else:
                    yield from buffer.add(batch)
        tail_start = max(start_ms, today)
        if tail_start < end_ms:
            if source == "auto":
                for batch in _rest(client, symbol, tf, tail_start, end_ms, now, stats):
                    yield from buffer.add(batch)
            else:
                log.warning(
                    "%s %s: [%s, %s) is not in the archive yet (today); not fetched with --source archive",
                    symbol,
                    tf.interval,
                    timeutil.iso(timeutil.ms_to_dt(tail_start)),
                    timeutil.iso(timeutil.ms_to_dt(end_ms)),
                )
                stats.unfilled_ranges.append((tail_start, end_ms))
        yield from buffer.flush()
    finally:
        parts.close()
        session.close()
    log.info(
        "%s %s archive: %d files, %d rows from archive, %d from REST, %d missing files, %d failed",
        symbol,
        tf.interval,
        stats.files,
        stats.archive_rows,
        stats.rest_rows,
        len(stats.files_missing),
        len(stats.files_failed),
    )


def _prefetch(
    fetcher: ArchiveFetcher,
    periods: list[Period],
    start_ms: int,
    end_ms: int,
    workers: int,
    stats: ArchiveStats,
) -> Generator[FilePart, None, None]:
    """Fetch periods in a pool, yielding their parts in order; at most ``workers + 1`` files outstanding.

    Outstanding = submitted and not yet handed over, plus the one the consumer is working on: the next
    submission happens only once the consumer comes back for more.
    """
    todo = iter(periods)
    pending: deque[Future[list[FilePart]]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive")
    try:
        while True:
            while len(pending) < workers + 1:
                period = next(todo, None)
                if period is None:
                    break
                lo = max(start_ms, period.lo_ms)
                # each download runs in a copy of the caller's context: its span joins the job's trace
                pending.append(pool.submit(contextvars.copy_context().run, fetcher.fetch, period, lo, end_ms))
                stats.max_outstanding = max(stats.max_outstanding, len(pending))
            if not pending:
                return
            parts = pending.popleft().result()
            yield from parts
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


class _Batcher:
    """Coalesces small batches (daily files, REST pages) into sink-sized ones, keeping order."""

    def __init__(self, size: int = BATCH_SIZE) -> None:
        self.size = size
        self.rows: list[Kline] = []

    def add(self, batch: list[Kline]) -> Iterator[list[Kline]]:
        if not self.rows and len(batch) >= self.size:
            for i in range(0, len(batch) - len(batch) % self.size, self.size):
                yield batch[i : i + self.size]
            self.rows = batch[len(batch) - len(batch) % self.size :]
            return
        self.rows.extend(batch)
        while len(self.rows) >= self.size:
            out, self.rows = self.rows[: self.size], self.rows[self.size :]
            yield out

    def flush(self) -> Iterator[list[Kline]]:
        if self.rows:
            out, self.rows = self.rows, []
            yield out


@dataclass
class _Run:
    """Turns each file part into batches, filling what the archive lacks from REST (``auto``)."""

    client: Any
    symbol: str
    tf: Timeframe
    start_ms: int
    end_ms: int
    source: str
    now: int
    stats: ArchiveStats

    def resolve(self, part: FilePart) -> Iterator[list[Kline] | KlineBlock]:
        lo, hi = max(part.period.lo_ms, self.start_ms), min(part.period.hi_ms, self.end_ms)
        if part.error is not None:
            self.stats.files_failed.append(part.filename)
            if self.source == "archive":
                raise part.error
            log.error("%s; fetching [%s, %s) from REST instead", part.error, _iso(lo), _iso(hi))
            yield from self._fill([(lo, hi)], why=part.filename)
            return
        if part.missing:
            self.stats.files_missing.append(part.filename)
            if self.source == "archive":
                log.warning("archive file %s not found: [%s, %s) not fetched", part.filename, _iso(lo), _iso(hi))
                self.stats.unfilled_ranges.append((lo, hi))
                return
            log.info("archive file %s not found: [%s, %s) from REST", part.filename, _iso(lo), _iso(hi))
            yield from self._fill([(lo, hi)], why=part.filename)
            return
        self.stats.files += 1
        self.stats.archive_rows += len(part.block) if part.block is not None else len(part.rows)
        holes = missing_ranges(self.tf, lo, hi, part.open_ms)
        if holes and self.source == "archive":
            log.warning("archive file %s lacks %d candle range(s): not fetched", part.filename, len(holes))
            self.stats.unfilled_ranges.extend(holes)
            holes = []
        if part.block is not None:
            if not holes:
                if len(part.block):
                    yield part.block
                return
            fills = [k for batch in self._fill(holes, why=part.filename) for k in batch]
            merged = sorted(part.block.to_klines() + fills, key=_open_time)
            if merged:
                yield merged
            return
        if not holes:
            for i in range(0, len(part.rows), BATCH_SIZE):  # validated chunk by chunk: writing starts early
                yield to_klines(self.symbol, self.tf.interval, part.rows[i : i + BATCH_SIZE])
            return
        fills = [k for batch in self._fill(holes, why=part.filename) for k in batch]
        merged = sorted(to_klines(self.symbol, self.tf.interval, part.rows) + fills, key=_open_time)
        if merged:
            yield merged

    def _fill(self, ranges: list[tuple[int, int]], why: str) -> Iterator[list[Kline]]:
        for lo, hi in ranges:
            log.debug("%s %s: REST for [%s, %s) (%s)", self.symbol, self.tf.interval, _iso(lo), _iso(hi), why)
            yield from _rest(self.client, self.symbol, self.tf, lo, hi, self.now, self.stats)


def extract_closed_before(client: Any) -> int:
    """The exchange's clock decides which candles are closed (see ``extract.closed_before``)."""
    from binance_extractor import extract

    return extract.closed_before(client)


def _rest(
    client: Any, symbol: str, tf: Timeframe, lo: int, hi: int, now_ms: int | None, stats: ArchiveStats
) -> Iterator[list[Kline]]:
    from binance_extractor import extract  # the REST path; imported late to keep this module light

    stats.rest_ranges.append((lo, hi))
    got = 0
    for batch in extract.iter_klines(client, symbol, tf, lo, hi, now_ms=now_ms):
        got += len(batch)
        stats.rest_rows += len(batch)
        yield batch
    if got == 0:
        stats.unfilled_ranges.append((lo, hi))


def _open_time(k: Kline) -> datetime:
    return k.open_time


def _iso(ms: int) -> str:
    return timeutil.iso(timeutil.ms_to_dt(ms))


__all__ = [
    "SOURCES",
    "ArchiveError",
    "ArchiveFetcher",
    "ArchiveStats",
    "FilePart",
    "Period",
    "archivable",
    "iter_klines",
    "missing_ranges",
    "parse_csv",
    "parse_rows",
    "parse_zip",
    "plan_periods",
    "read_zip",
    "read_zip_bytes",
    "to_klines",
]
