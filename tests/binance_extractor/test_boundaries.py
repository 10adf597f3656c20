"""Module boundaries the code relies on, checked over the package's syntax trees (no imports executed).

Why: the stores keep their connections, quoting and retries private; gap detection and the health page ask
them through public methods (``Sink.gap_queries()``, ``recent_runs``, ``stored_symbols``) instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import binance_extractor

PACKAGE = Path(binance_extractor.__file__).parent
STORE_PRIVATES = {"_prepare", "_q", "_call", "_from_db", "_to_db", "_tx", "_conn"}


def modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_nothing_outside_the_stores_touches_their_private_members() -> None:
    offenders = []
    for path in modules():
        if path.parent.name == "sinks":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in STORE_PRIVATES:
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_no_branching_on_a_sink_name_outside_the_stores() -> None:
    offenders = []
    for path in modules():
        if path.parent.name == "sinks":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "name":
                owner = node.left.value
                if isinstance(owner, ast.Name) and "sink" in owner.id:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_the_checks_above_do_see_an_offence() -> None:
    tree = ast.parse("if sink.name == 'mongo':\n    sink._call(f)\n")
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert {"name", "_call"} <= attrs


def test_the_gaps_package_keeps_every_module_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in modules(PACKAGE / "gaps")}
    assert len(sizes) >= 6 and max(sizes.values()) < 300, sizes
