"""Logging for the CLI and pods: JSON lines (with trace/span ids) or human text, secrets always masked.

``configure()`` is called once by the CLI. Masking happens twice: a handler filter rewrites the record (message,
arguments, extra fields, traceback) before any formatter sees it, and the formatters mask their final output, so a
secret that slips into a field added later is still caught.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from binance_extractor import telemetry

MASK = "***"
SECRET_ENV = ("BINANCE_API_KEY", "BINANCE_API_SECRET")
_MIN_SECRET_LEN = 4

# scheme://user:PASSWORD@host
_URI_PASSWORD = re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'\"]*:)(?P<secret>[^\s@'\"]+)(?=@)")
# password=..., "password": "...", passwd: ..., pwd=...
_KEY_VALUE = re.compile(
    r"(?P<keep>(?i:\b(?:password|passwd|pwd|api[_-]?secret|secret[_-]?key)\b)['\"]?\s*[=:]\s*['\"]?)"
    r"(?P<secret>[^\s'\",;&}]+)"
)
# X-MBX-APIKEY: ..., 'X-MBX-APIKEY': '...', X-MBX-APIKEY=..., api_key=...
_API_KEY = re.compile(
    r"(?P<keep>(?i:x-mbx-apikey|\bapi[_-]?key\b)['\"]?\s*[=:]\s*['\"]?)(?P<secret>[^\s'\",;&}]+)",
)

_extra_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def register_secret(value: str | None) -> None:
    """Mask this exact value in every log line from now on (e.g. a connection password read at run time)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _extra_secrets.add(value)


def _secrets() -> Iterable[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENV]
    with _secrets_lock:
        values.extend(_extra_secrets)
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def mask(text: str) -> str:
    """Redact API keys, URI passwords and ``password=`` values from any text."""
    if not text:
        return text
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URI_PASSWORD.sub(lambda m: m.group("keep") + MASK, text)
    text = _KEY_VALUE.sub(lambda m: m.group("keep") + MASK, text)
    return _API_KEY.sub(lambda m: m.group("keep") + MASK, text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: MASK if _is_secret_key(str(k)) else _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(v) for v in value)
    return value


def _is_secret_key(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return k in {"password", "passwd", "pwd", "api_key", "apikey", "x_mbx_apikey", "api_secret", "secret_key"}


class MaskingFilter(logging.Filter):
    """Rewrites a record so no secret reaches any formatter: message, args, extra fields and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the record
            message = str(record.msg)
        record.msg = mask(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key in _RESERVED:
                continue
            record.__dict__[key] = MASK if _is_secret_key(key) else _mask_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
            record.exc_info = None  # formatters would render the unmasked traceback again
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


class TraceJsonFormatter(JsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, trace_id/span_id, extra fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        ids = telemetry.current_ids()
        if ids:
            log_data["trace_id"], log_data["span_id"] = ids

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class HumanFormatter(logging.Formatter):
    """Terminal format; appends the trace id when a span is active."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = telemetry.current_ids()
        if ids:
            text = f"{text} [trace_id={ids[0]}]"
        return mask(text)


_handler: logging.Handler | None = None


def configure(json: bool | None = None, verbose: bool = False, stream: IO[str] | None = None) -> logging.Handler:
    """Send root logging to stderr: JSON lines when ``json`` (default: when stderr is not a TTY), else text.

    ``BINANCE_LOG_FORMAT=json|text`` overrides the default, ``BINANCE_LOG_LEVEL`` the level (INFO, DEBUG
    with ``verbose``). Idempotent: a second call replaces the handler installed by the first.
    """
    global _handler
    out = stream if stream is not None else sys.stderr
    if json is None:
        forced = os.environ.get("BINANCE_LOG_FORMAT", "").strip().lower()
        json = forced == "json" if forced in ("json", "text") else not _isatty(out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(TraceJsonFormatter() if json else HumanFormatter())
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    _handler = handler
    level_name = os.environ.get("BINANCE_LOG_LEVEL", "").strip().upper()
    level = logging.getLevelName(level_name) if level_name else (logging.DEBUG if verbose else logging.INFO)
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    for noisy in ("urllib3", "opentelemetry"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    return handler


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
