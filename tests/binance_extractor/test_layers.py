"""The import graph of the library: no circle, and every arrow points down the layers (docs/ARCHITECTURE.md,
"Layers"). Every import counts: module level, inside functions and under ``TYPE_CHECKING`` alike, read from the
syntax trees (nothing is imported).

Why: a circle (``sql.py`` <-> ``sql_gaps.py``) or an upward arrow (telemetry importing the package root for its
version) makes a module impossible to read, test or move on its own; the drawing grew to 19 floors from one such
import.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import binance_extractor

PACKAGE = Path(binance_extractor.__file__).parent
ROOT = PACKAGE.name

# Bottom to top: a module may import its own layer and those below. A name covers a module or a whole package.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "errors",
            "version",
            "clock",
            "timeutil",
            "timeframes",
            "symbols",
            "prices",
            "masking",
            "breaker",
            "ratelimit",
            "resources",
            "db_timeouts",
            "logs",
            "telemetry",
            "telemetry_capture",
            "telemetry_exporters",
            "telemetry_propagation",
            "telemetry_remote_write",
            "exchange_clock",
        ),
    ),
    ("vocabulary", ("models", "derivative_models", "catalog", "kinds", "config", "weights")),
    (
        "storage and exchange",
        (
            "sinks",
            "budget",
            "client",
            "archive",
            "archive_columns",
            "archive_fetch",
            "archive_files",
            "archive_periods",
            "extract",
            "open_interest",
            "freshness",
            "stream.plan",
            "stream.seam",
            "stream.messages",
            "stream.health",
        ),
    ),
    (
        "jobs",
        (
            "sources",
            "pipeline",
            "lookahead",
            "symbol_batch",
            "gaps",
            "reader",
            "health",
            "kpis",
            "export",
            "restore",
            "store_copy",
            "store_rows",
            "stream.tail",
        ),
    ),
    ("commands", ("cli", "cli_options", "data_cli", "gaps_cli", "export_cli", "import_cli", "copy_cli", "stream")),
    ("entry points", ("__init__", "__main__", "airflow")),
)
# Arrows allowed against the order, each with its reason.
UPWARD_ALLOWED = {
    ("cli_options", "airflow.hooks"): "make_client: the connection's hook behind --binance-conn-id, imported lazily",
}


def module_names() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)
        out[name] = path
    return out


def _owner(target: str, modules: dict[str, Path]) -> str | None:
    """The library module ``binance_extractor.a.b.C`` names (the longest existing prefix)."""
    if target == ROOT:
        return "__init__"
    if not target.startswith(ROOT + "."):
        return None
    name = target[len(ROOT) + 1 :]
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or "__init__"


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every library module ``name`` imports, at any depth (functions, TYPE_CHECKING blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = [ROOT, *package.split(".")] if package and package != "__init__" else [ROOT]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            owner = _owner(target, modules)
            if owner is not None and owner != name:
                found.add(owner)
    return found


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(name: str) -> int:
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            covers = name == member or name.startswith(member + ".")
            if covers and (best is None or len(member) > best[0]):
                best = (len(member), index)
    assert best is not None, f"{name} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)"
    return best[1]


def test_the_import_graph_has_no_circle() -> None:
    try:
        tuple(TopologicalSorter(graph()).static_order())
    except CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in graph().items()
        for b in sorted(targets)
        if layer_of(b) > layer_of(a) and (a, b) not in UPWARD_ALLOWED
    ]
    assert upward == []


def test_the_layers_named_in_the_architecture_doc_are_these() -> None:
    doc = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    for name, _ in LAYERS:
        assert name in section, name


def test_the_graph_reader_sees_every_spelling(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from binance_extractor import clock\n"
        "import binance_extractor.sinks.sql\n"
        "from binance_extractor.sinks.base import Store\n"
        "from binance_extractor import __version__\n"
        "if TYPE_CHECKING:\n    from binance_extractor.models import Kline\n"
        "def f():\n    from . import errors\n"
    )
    path = tmp_path / "x.py"
    path.write_text(source)
    modules = {n: Path() for n in ("clock", "sinks", "sinks.sql", "sinks.base", "models", "errors", "x")}
    assert imports_of("x", path, modules) == {"clock", "sinks.sql", "sinks.base", "__init__", "models", "errors"}
