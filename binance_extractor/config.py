"""Settings from ``include/config.yaml`` and the environment (the environment wins).

Read lazily and cached: importing the library touches no file, network or database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from binance_extractor.errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "include" / "config.yaml"
DEFAULT_BASE_URL = "https://fapi.binance.com"
DEFAULT_ARCHIVE_URL = "https://data.binance.vision"
VALID_SINKS = ("sqlite", "mysql", "postgres", "mongo", "jsonl")


@dataclass(frozen=True)
class Settings:
    symbols: tuple[str, ...]
    timeframes: dict[str, dict[str, Any]]
    history_days: int = 30
    full_history: bool = False
    max_catchup_days: int = 7
    freshness_grace_minutes: int = 5
    weight_margin: float = 0.95
    retention: dict[str, int | None] = field(default_factory=dict)
    gap_filler: dict[str, Any] = field(default_factory=dict)


def _env_bool(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _load(path: str) -> dict[str, Any]:
    """The parsed file, re-read only when it changes (long-lived processes see edits)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    return _parse(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must be a mapping of settings")
    return data


def settings() -> Settings:
    """The effective settings: config file first, then ``BINANCE_*`` environment overrides."""
    raw = dict(_load(os.environ.get("BINANCE_EXTRACTOR_CONFIG", str(DEFAULT_CONFIG))))
    if os.environ.get("BINANCE_SYMBOLS"):
        raw["symbols"] = parse_symbols(os.environ["BINANCE_SYMBOLS"])
    if os.environ.get("BINANCE_EXTRACTOR_HISTORY_DAYS"):
        raw["history_days"] = int(os.environ["BINANCE_EXTRACTOR_HISTORY_DAYS"])
    if os.environ.get("BINANCE_EXTRACTOR_MAX_CATCHUP_DAYS"):
        raw["max_catchup_days"] = int(os.environ["BINANCE_EXTRACTOR_MAX_CATCHUP_DAYS"])
    full = _env_bool("BINANCE_EXTRACTOR_FULL_HISTORY")
    if full is not None:
        raw["full_history"] = full
    return Settings(
        symbols=tuple(raw.get("symbols") or ()),
        timeframes=dict(raw.get("timeframes") or {}),
        history_days=int(raw.get("history_days", 30)),
        full_history=bool(raw.get("full_history", False)),
        max_catchup_days=int(raw.get("max_catchup_days", 7)),
        freshness_grace_minutes=int(raw.get("freshness_grace_minutes", 5)),
        weight_margin=float(raw.get("weight_margin", 0.95)),
        retention=dict(raw.get("retention") or {}),
        gap_filler=dict(raw.get("gap_filler") or {}),
    )


def parse_symbols(value: str | list[str]) -> list[str]:
    """Comma/space separated or list -> upper-case symbols, order kept, duplicates dropped."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        sym = str(item).strip().upper()
        if sym and sym not in out:
            out.append(sym)
    return out


def base_url() -> str:
    return os.environ.get("BINANCE_FUTURES_BASE_URL", DEFAULT_BASE_URL).rstrip("/")


def archive_url() -> str:
    return os.environ.get("BINANCE_ARCHIVE_BASE_URL", DEFAULT_ARCHIVE_URL).rstrip("/")


def api_key() -> str | None:
    return os.environ.get("BINANCE_API_KEY") or None


def data_dir() -> Path:
    """Where the embedded SQLite store (and JSONL output by default) lives."""
    return Path(os.environ.get("BINANCE_EXTRACTOR_DATA_DIR", str(PROJECT_ROOT / "data")))


def sink_names(value: str | None = None) -> list[str]:
    """``BINANCE_EXTRACTOR_SINKS`` (or ``value``), e.g. ``mysql,mongo``; default: the embedded SQLite."""
    raw = value if value is not None else os.environ.get("BINANCE_EXTRACTOR_SINKS", "sqlite")
    names = [n.strip().lower() for n in raw.replace(" ", ",").split(",") if n.strip()]
    bad = [n for n in names if n not in VALID_SINKS]
    if bad:
        raise InputError(f"unknown sink {bad[0]!r}: use one of {', '.join(VALID_SINKS)}")
    return names or ["sqlite"]


def runtime() -> str:
    """``local`` (in-process, the embedded default) or ``kubernetes`` (one pod per mapped task)."""
    value = os.environ.get("BINANCE_EXTRACTOR_RUNTIME", "local").strip().lower()
    if value not in ("local", "kubernetes"):
        raise InputError(f"BINANCE_EXTRACTOR_RUNTIME must be local or kubernetes, not {value!r}")
    return value
