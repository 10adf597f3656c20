"""The one module map (docs/ARCHITECTURE.md, "Modules (library)") names every module of the package, and
every module it names exists: the README links to it instead of keeping a second copy."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "binance_extractor"
MAP = ROOT / "docs" / "ARCHITECTURE.md"


def map_rows() -> list[tuple[list[str], str]]:
    """(names in the first column, the whole row) of the module table."""
    text = MAP.read_text()
    section = text.split("## Modules (library)", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            rows.append((re.findall(r"`([^`]+)`", first), line))
    return rows


def package_entries() -> list[str]:
    """Top-level modules and subpackages: ``cli.py``, ``sinks/`` ..."""
    out = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    out += [f"{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    return sorted(out)


def test_every_module_of_the_package_is_on_the_map() -> None:
    rows = map_rows()
    named = {n for names, _ in rows for n in names}
    assert [e for e in package_entries() if e not in named] == []
    for entry in package_entries():
        if not entry.endswith("/"):
            continue
        row = next(line for names, line in rows if entry in names)
        members = [p.name for p in (PACKAGE / entry).glob("*.py") if p.name != "__init__.py"]
        assert [m for m in members if f"`{m}`" not in row and m not in row] == [], entry


def test_every_module_on_the_map_exists() -> None:
    for names, _ in map_rows():
        for name in names:
            path = ROOT / name if name.startswith("plugins/") else PACKAGE / name
            assert path.exists(), name


def test_the_readme_links_to_the_map_instead_of_copying_it() -> None:
    readme = (ROOT / "README.md").read_text()
    library = readme.split("### The library (`binance_extractor`)", 1)[1].split("\n## ", 1)[0]
    assert "docs/ARCHITECTURE.md" in library
    assert "| module |" not in library
