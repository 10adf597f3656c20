"""Downloading archive files for one (symbol, interval): checksum first, retries with backoff, fail fast once
the host is gone. Thread-safe for GETs, so ``archive.iter_klines`` runs several in a small pool.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from binance_extractor import telemetry
from binance_extractor.archive_columns import KlineBlock, parse_block
from binance_extractor.archive_files import (
    ArchiveError,
    _BadFile,
    _diagnose,
    _parse_checksum,
    _Unreachable,
    parse_rows,
    read_zip,
    read_zip_bytes,
)
from binance_extractor.archive_periods import Period
from binance_extractor.catalog import DataKind
from binance_extractor.timeframes import Timeframe

log = logging.getLogger("binance_extractor.archive")

ATTEMPTS = 3  # downloads per file before a corrupt/truncated/unreachable file is reported
RETRY_WAIT_S = (0.2, 2.0)  # initial and maximum backoff between attempts
TIMEOUT_S = (10.0, 120.0)  # connect, read


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
        self,
        symbol: str,
        tf: Timeframe,
        session: requests.Session,
        base_url: str,
        columnar: bool = False,
        *,
        folder: str = "klines",
        kind: DataKind = DataKind.KLINES,
        parse: Callable[[str, int, int], tuple[list[list[str]], list[int]]] | None = None,
    ) -> None:
        """``folder`` picks the series (``klines``, ``markPriceKlines``... or ``metrics``) and ``kind`` its table's
        columns (columnar mode); ``parse`` reads a
        file's CSV text into (rows in the window, their times) when it is not kline-shaped (the metrics files)."""
        self.symbol = symbol
        self.tf = tf
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.columnar = columnar
        self.folder = folder
        self.kind = kind
        self.parse = parse
        self.down = False  # set once a file failed for want of a host: later files fail fast

    def fetch(self, period: Period, lo_ms: int, hi_ms: int) -> list[FilePart]:
        """The period's file (a monthly one not yet published falls back to its daily files)."""
        part = self.fetch_file(period, lo_ms, hi_ms)
        if period.kind == "monthly" and part.missing:
            log.info("monthly archive file %s not published: using daily files", part.filename)
            return [self.fetch_file(day, lo_ms, hi_ms) for day in period.days() if day.hi_ms > lo_ms]
        return [part]

    def fetch_file(self, period: Period, lo_ms: int, hi_ms: int) -> FilePart:
        label = "metrics" if self.folder == "metrics" else self.tf.interval
        name = period.filename(self.symbol, label)
        url = f"{self.base_url}/{period.path(self.symbol, label, self.folder)}"
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
                            block = parse_block(read_zip_bytes(body), self.symbol, self.tf, lo_ms, hi_ms, self.kind)
                            return FilePart(period, name, open_ms=block.open_ms(), block=block)
                        if self.parse is not None:
                            rows, opens = self.parse(read_zip(body), lo_ms, hi_ms)
                            return FilePart(period, name, rows, opens)
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


def pooled_session(workers: int) -> requests.Session:
    """One session for an archive fetch: a connection for each download worker plus the checksum's."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(2, workers + 1))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
