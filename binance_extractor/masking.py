"""Secrets out of every text the project shows: log lines, error messages (CLI stderr, the audit table's
``error`` column and so the data-health page, the gap filler's XCom) and OpenTelemetry span events.

``mask_url`` is the one place a URL's password is hidden; ``mask`` applies it to every URL inside a text and also
hides API keys, ``password=`` values and the secrets registered at run time (``register_secret``).

A URL's credentials run from ``://`` to the LAST ``@`` before the host. That is how the standard library splits
a netloc (``urllib.parse``: ``rpartition("@")``), and with it redis-py and Airflow's connection URIs; the password
starts after the first ``:`` of the user information, as there. So a password holding ``@`` (once or several
times), ``:``, ``/`` or percent-encodings (``%40``) is hidden whole. SQLAlchemy's own rendering
(``URL.render_as_string(hide_password=True)``) stops the password at the FIRST ``@`` and prints the rest of such a
password as the host, so it is never used to show a URL.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
SECRET_ENV = ("BINANCE_API_KEY", "BINANCE_API_SECRET")
_MIN_SECRET_LEN = 4

# A URL in running text: scheme://... up to the next whitespace (a URL never holds one unencoded)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://\S+")
# password=..., "password": "...", passwd: ..., pwd=...
_KEY_VALUE = re.compile(
    r"(?P<keep>(?i:\b(?:password|passwd|pwd|api[_-]?secret|secret[_-]?key)\b)['\"]?\s*[=:]\s*['\"]?)"
    r"(?P<secret>[^\s'\",;&}]+)"
)
# X-MBX-APIKEY: ..., 'X-MBX-APIKEY': '...', X-MBX-APIKEY=..., api_key=...
_API_KEY = re.compile(
    r"(?P<keep>(?i:x-mbx-apikey|\bapi[_-]?key\b)['\"]?\s*[=:]\s*['\"]?)(?P<secret>[^\s'\",;&}]+)",
)
_SECRET_KEYS = frozenset({"password", "passwd", "pwd", "api_key", "apikey", "x_mbx_apikey", "api_secret", "secret_key"})

_extra_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask this exact value in every text from now on (e.g. a connection password read at run time)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _extra_secrets.add(value)


def url_password(url: str) -> str | None:
    """The password of ``url`` as written (percent-encodings kept), split as ``mask_url`` splits it."""
    _, sep, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if not (sep and at) or ":" not in userinfo:
        return None
    return userinfo.partition(":")[2]


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (and any ``password=`` query value); the user, host, port,
    path and query stay readable. A text that is not a URL is returned unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{':' + MASK if colon else ''}@{host}"
    return f"{scheme}://{_KEY_VALUE.sub(_keep, rest)}"


def _keep(m: re.Match[str]) -> str:
    return m.group("keep") + MASK


def _secrets() -> Iterable[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENV]
    with _secrets_lock:
        values.extend(_extra_secrets)
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def mask(text: str) -> str:
    """Redact registered secrets, API keys, URL passwords (``mask_url``) and ``password=`` values from any text."""
    if not text:
        return text
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL.sub(lambda m: mask_url(m.group()), text)
    text = _KEY_VALUE.sub(_keep, text)
    return _API_KEY.sub(_keep, text)


def is_secret_key(key: str) -> bool:
    """Whether a field of this name holds a secret (its value is masked whole)."""
    return key.lower().replace("-", "_") in _SECRET_KEYS


def mask_value(value: Any) -> Any:
    """``mask`` applied through strings, dicts (secret-named keys masked whole), lists and tuples."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(str(k)) else mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_value(v) for v in value)
    return value


__all__ = ["MASK", "is_secret_key", "mask", "mask_url", "mask_value", "register_secret", "url_password"]
