"""Exception hierarchy: what is worth retrying and what must fail at once.

Every error carries a one-line, credential-free message so the CLI can print it as is.
"""

from __future__ import annotations


class ExtractorError(Exception):
    """Base class for every error the library raises on purpose."""


class InputError(ExtractorError, ValueError):
    """Bad user input (unknown symbol, malformed date, wrong interval): never retried."""


class ValidationError(ExtractorError, ValueError):
    """An exchange row is impossible (e.g. high below low); the row is never written."""


class BinanceAPIError(ExtractorError):
    """An error answer from the exchange, with its HTTP status and Binance error code."""

    def __init__(self, status: int, code: int | None, message: str, path: str = "") -> None:
        self.status = status
        self.code = code
        self.msg = message
        self.path = path
        where = f" on {path}" if path else ""
        super().__init__(f"Binance error{where}: HTTP {status}, code {code}: {message}")


class FatalAPIError(BinanceAPIError):
    """Retrying cannot help: invalid symbol (-1121), interval (-1120), limit (-1130), bad key (-2014/-2015)."""


class RetryableAPIError(BinanceAPIError):
    """5xx, -1001 (disconnected), 429 and malformed bodies: retried with backoff."""


class RateLimitedError(RetryableAPIError):
    """HTTP 429: over the weight limit; ``retry_after`` seconds come from the Retry-After header."""

    def __init__(self, status: int, code: int | None, message: str, path: str, retry_after: float) -> None:
        super().__init__(status, code, message, path)
        self.retry_after = retry_after


class IPBannedError(ExtractorError):
    """HTTP 418: the IP is banned until ``until`` (epoch seconds); nothing may be sent before then."""

    def __init__(self, until: float, message: str) -> None:
        self.until = until
        super().__init__(message)


class BudgetUnavailableError(ExtractorError):
    """The shared weight budget's store cannot be reached: nothing is sent rather than a blind burst."""


class CircuitOpenError(ExtractorError):
    """The host failed too often in a row; calls are refused until the cool-down ends."""


class SinkError(ExtractorError):
    """A storage failure that persisted after retries (message never carries credentials)."""
