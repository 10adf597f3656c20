"""Byte-compile what the extraction pods import, and nothing else (run by the Dockerfile's extractor stage).

The pod image's dependencies are installed without byte-code (``pip install --no-compile``): most of what
``apache-airflow-core`` pulls in (its API server, UI, migrations, code tooling) never runs in a pod, and its
``.pyc`` files were a sixth of the image. At runtime the root filesystem is read-only, so a module without a
``.pyc`` would be compiled again in memory at every start: this script imports every module the pods use, once,
at build time, so that Python writes their byte-code into the image.

What it imports: every module of ``binance_extractor`` and every module any of them imports, at the top or inside a
function (found by reading the sources, so a new lazy import is covered without editing this file), plus
``EXTRA``, modules that third-party code loads lazily on the pods' paths. ``tests/images`` runs a real pod with
``PYTHONVERBOSE`` and fails, naming them, if a module was still compiled from source.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

# Loaded by third-party code on the pods' paths (a connection looked up, a driver connecting, an exporter); the
# image test of a real extraction names any that is missing.
EXTRA = (
    "MySQLdb",
    "MySQLdb.connections",
    "MySQLdb.constants.FLAG",
    "MySQLdb.converters",
    "MySQLdb.cursors",
    "airflow.sdk._shared.logging",
    "airflow.sdk._shared.logging._config",
    "airflow.sdk._shared.logging._noncaching",
    "airflow.sdk._shared.logging.percent_formatter",
    "airflow.sdk._shared.logging.structlog",
    "airflow.sdk.execution_time.cache",
    "airflow.sdk.execution_time.coordinator",
    "airflow.sdk.execution_time.request_handlers",
    "airflow.sdk.execution_time.schema.migrator",
    "airflow.sdk.execution_time.supervisor",
    "multiprocessing.context",
    "multiprocessing.process",
    "multiprocessing.reduction",
    "netrc",
    "psycopg",
    "psycopg2",
    "psycopg2.extras",
    "pymongo",
    "redis",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "sqlalchemy.dialects.mysql.mysqldb",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
)


def imported_names(package_dir: Path) -> set[str]:
    """Every absolute module name an ``import`` or ``from ... import`` in the package's sources names."""
    names: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                # ``from a.b import c`` may name a submodule c.
                names.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def main() -> int:
    import binance_extractor

    package_dir = Path(binance_extractor.__file__).parent
    modules = [m.name for m in pkgutil.walk_packages([str(package_dir)], "binance_extractor.")]
    modules += sorted(imported_names(package_dir)) + list(EXTRA)
    loaded, skipped = 0, []
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            loaded += 1
        except ImportError as exc:  # an attribute named like a module, or what the pod image leaves out
            skipped.append(f"{name} ({exc.__class__.__name__})")
        except Exception as exc:  # importing must not run anything, but one failure must not stop the others
            skipped.append(f"{name} ({exc.__class__.__name__}: {exc})")
    print(f"pod-bytecode: {loaded} modules imported, {len(sys.modules)} loaded in all; skipped {len(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
