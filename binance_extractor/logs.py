"""Logging for the CLI and pods: JSON lines (with trace/span ids) or human text, secrets always masked.

``configure()`` is called once by the CLI. What is masked, and how, is ``binance_extractor.masking`` (re-exported
here: ``logs.mask``, ``logs.register_secret``). Masking happens twice: a handler filter rewrites the record (message,
arguments, extra fields, traceback) before any formatter sees it, and the formatters mask their final output, so a
secret that slips into a field added later is still caught.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from binance_extractor import telemetry
from binance_extractor.masking import MASK, SECRET_ENV, is_secret_key, mask, mask_url, mask_value, register_secret

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


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
            record.__dict__[key] = MASK if is_secret_key(key) else mask_value(value)
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


__all__ = ["MASK", "SECRET_ENV", "MaskingFilter", "configure", "mask", "mask_url", "register_secret"]
