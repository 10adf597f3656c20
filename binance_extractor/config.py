"""Settings from the config file and the environment (the environment wins).

The default config ships inside the package (``binance_extractor/resources/config.yaml``, the same file as the
repository's ``include/config.yaml``), so an installed wheel parses its DAGs anywhere; ``BINANCE_EXTRACTOR_CONFIG``
points at another file. Read lazily and cached: importing the library touches no file, network or database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from binance_extractor import catalog
from binance_extractor.errors import InputError
from binance_extractor.version import __version__

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resource_path(name: str) -> Path:
    """A file shipped in ``binance_extractor/resources`` (a real path: setuptools installs package data as files)."""
    return Path(str(resources.files("binance_extractor.resources").joinpath(name)))


DEFAULT_CONFIG = resource_path("config.yaml")
DEFAULT_POD_TEMPLATE = resource_path("extractor-pod.yaml")
DEFAULT_NAMESPACE = "petrosa-apps"
DEFAULT_SERVICE_ACCOUNT = "binance-extractor"
DEFAULT_IMAGE = f"binance-extractor:{__version__}"
DEFAULT_POOL_SLOTS = 4
MAX_MAP_LENGTH = 1024  # Airflow's default [core] max_map_length: mapped tasks per task, at most
DEFAULT_BASE_URL = "https://fapi.binance.com"
DEFAULT_ARCHIVE_URL = "https://data.binance.vision"


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
    kubernetes: dict[str, Any] = field(default_factory=dict)
    symbols_per_task: int = 1
    max_tasks_per_run: int | None = None
    derivatives: dict[str, Any] = field(default_factory=dict)


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
    for env, key in (
        ("BINANCE_EXTRACTOR_SYMBOLS_PER_TASK", "symbols_per_task"),
        ("BINANCE_EXTRACTOR_MAX_TASKS_PER_RUN", "max_tasks_per_run"),
    ):
        if os.environ.get(env):
            value = os.environ[env].strip()
            raw[key] = None if key == "max_tasks_per_run" and value.lower() in ("none", "null") else value
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
        kubernetes=dict(raw.get("kubernetes") or {}),
        symbols_per_task=_at_least_one("symbols_per_task", raw.get("symbols_per_task", 1)),
        max_tasks_per_run=None
        if raw.get("max_tasks_per_run") is None
        else _at_least_one("max_tasks_per_run", raw["max_tasks_per_run"]),
        derivatives=dict(raw.get("derivatives") or {}),
    )


def _at_least_one(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a whole number, not {value!r}") from None
    if number < 1:
        raise InputError(f"{name} must be at least 1, not {number}")
    return number


DERIVATIVE_SERIES = tuple(k.value for k in catalog.DERIVATIVE_KINDS)  # the names of the ``derivatives:`` sections


def derivative_kinds() -> list[str]:
    """The derivative series enabled in ``derivatives:`` (docs/DATASETS.md), in catalog order; none by default,
    so a trade-only deployment schedules, scans and creates nothing for them. An unknown name is an input error."""
    raw = settings().derivatives
    unknown = [name for name in raw if name not in DERIVATIVE_SERIES]
    if unknown:
        raise InputError(f"unknown series {unknown[0]!r} in derivatives: use {', '.join(DERIVATIVE_SERIES)}")
    return [name for name in DERIVATIVE_SERIES if (raw.get(name) or {}).get("enabled", False) is True]


def derivative_cron(name: str, default: str) -> str:
    """The cron of a derivative series' DAGs (``derivatives.<name>.cron``), else ``default``."""
    return str((settings().derivatives.get(name) or {}).get("cron") or default)


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
    """Where the embedded SQLite store (and JSONL output by default) lives: ``data/`` of a source checkout,
    else ``$AIRFLOW_HOME/binance_data`` (an installed package has no repository around it)."""
    if os.environ.get("BINANCE_EXTRACTOR_DATA_DIR"):
        return Path(os.environ["BINANCE_EXTRACTOR_DATA_DIR"])
    if (PROJECT_ROOT / "include" / "config.yaml").is_file():
        return PROJECT_ROOT / "data"
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "binance_data"


def sink_names(value: str | None = None) -> list[str]:
    """``BINANCE_EXTRACTOR_SINKS`` (or ``value``), e.g. ``mysql,mongo``; default: the embedded SQLite."""
    raw = value if value is not None else os.environ.get("BINANCE_EXTRACTOR_SINKS", catalog.DEFAULT_STORE)
    names = [n.strip().lower() for n in raw.replace(" ", ",").split(",") if n.strip()]
    for name in names:
        catalog.store(name)  # an unknown name: InputError naming the valid ones
    return names or [catalog.DEFAULT_STORE]


def runtime() -> str:
    """``local`` (in-process, the embedded default) or ``kubernetes`` (one pod per mapped task)."""
    value = os.environ.get("BINANCE_EXTRACTOR_RUNTIME", "local").strip().lower()
    if value not in ("local", "kubernetes"):
        raise InputError(f"BINANCE_EXTRACTOR_RUNTIME must be local or kubernetes, not {value!r}")
    return value


# --------------------------------------------------------------------------------------------- deployment


def _deployment(env: str, key: str, default: Any) -> Any:
    """Environment ``env``, else ``kubernetes.<key>`` of the config file, else ``default``."""
    from_env = os.environ.get(env, "").strip()
    if from_env:
        return from_env
    value = settings().kubernetes.get(key)
    return default if value is None or value == "" else value


def namespace() -> str:
    """Namespace of the extraction pods (``BINANCE_EXTRACTOR_NAMESPACE`` / ``kubernetes.namespace``)."""
    return str(_deployment("BINANCE_EXTRACTOR_NAMESPACE", "namespace", DEFAULT_NAMESPACE))


def service_account() -> str:
    """Service account of the extraction pods (``BINANCE_EXTRACTOR_SERVICE_ACCOUNT``)."""
    return str(_deployment("BINANCE_EXTRACTOR_SERVICE_ACCOUNT", "service_account", DEFAULT_SERVICE_ACCOUNT))


def image() -> str:
    """Image of the extraction pods (``BINANCE_EXTRACTOR_IMAGE`` / ``kubernetes.image``)."""
    return str(_deployment("BINANCE_EXTRACTOR_IMAGE", "image", DEFAULT_IMAGE))


def pod_template() -> Path:
    """Pod template file (``BINANCE_EXTRACTOR_POD_TEMPLATE``; default: the one shipped in the package)."""
    return Path(str(_deployment("BINANCE_EXTRACTOR_POD_TEMPLATE", "pod_template", DEFAULT_POD_TEMPLATE)))


def pool_slots() -> int:
    """Slots of the ``binance_api`` pool (``BINANCE_API_POOL_SLOTS`` / ``kubernetes.pool_slots``), at least 1."""
    return _at_least_one(
        "BINANCE_API_POOL_SLOTS", _deployment("BINANCE_API_POOL_SLOTS", "pool_slots", DEFAULT_POOL_SLOTS)
    )
