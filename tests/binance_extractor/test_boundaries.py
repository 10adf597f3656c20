"""Module boundaries the code relies on, checked over the package's syntax trees (no imports executed).

Why: the stores keep their connections, quoting and retries private; gap detection and the health page ask
them through public methods (``Store.gap_queries()``, ``recent_runs``, ``stored_symbols``) instead, and so do
the stores' own gap dialects (``sinks/sql_gaps.py``, ``sinks/mongo_gaps.py``: a small Protocol each). And the
Airflow-bound modules sit in ``binance_extractor/airflow/``, which the plain core never imports: only the CLI's
command table names the ``setup-airflow`` module (a string), and ``cli_options.make_client`` imports the
``binance`` connection's hook when ``--binance-conn-id`` is given. The CLI dispatches through one command table;
no command module imports ``cli`` back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import binance_extractor

PACKAGE = Path(binance_extractor.__file__).parent
AIRFLOW_PACKAGE = "binance_extractor.airflow"
MAY_IMPORT_AIRFLOW_PACKAGE = {"cli_options.py"}  # make_client: the hook behind --binance-conn-id, lazily
STORE_PRIVATES = {"_prepare", "_q", "_call", "_from_db", "_to_db", "_tx", "_conn"}


def modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_nothing_touches_a_stores_private_members_but_the_store_itself() -> None:
    """Inside ``sinks/`` too: the gap dialects ask their store through public members (a small Protocol each)."""
    offenders = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in STORE_PRIVATES:
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_no_branching_on_a_sink_name() -> None:
    """Not even in ``sinks/``: which class opens a name is a catalog lookup (``catalog.STORES``)."""
    offenders = []
    for path in modules():
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


def airflow_package_imports(tree: ast.AST) -> list[int]:
    """Lines importing ``binance_extractor.airflow`` (or anything under it), at any depth of the module."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == AIRFLOW_PACKAGE or n.startswith(AIRFLOW_PACKAGE + ".") for n in names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(
            a.name == AIRFLOW_PACKAGE or a.name.startswith(AIRFLOW_PACKAGE + ".") for a in node.names
        ):
            lines.append(node.lineno)
    return lines


def test_the_core_imports_nothing_from_the_airflow_package() -> None:
    offenders = []
    for path in modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "airflow" or str(rel) in MAY_IMPORT_AIRFLOW_PACKAGE:
            continue
        offenders += [f"{rel}:{line}" for line in airflow_package_imports(ast.parse(path.read_text()))]
    assert offenders == []


def test_the_airflow_import_check_sees_every_spelling() -> None:
    source = (
        "from binance_extractor.airflow import callbacks\n"
        "from binance_extractor import airflow\n"
        "import binance_extractor.airflow.hooks\n"
        "def f():\n    from binance_extractor.airflow.dagfactory import x\n"
        "import airflow.sdk\nfrom binance_extractor import alerts_like\n"
    )
    assert airflow_package_imports(ast.parse(source)) == [1, 2, 3, 5]


def test_the_pipeline_does_not_call_the_alerting_callbacks() -> None:
    tree = ast.parse((PACKAGE / "pipeline.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "alerts" not in names and "callbacks" not in names and "freshness" in names


def test_the_airflow_bound_modules_live_in_the_airflow_package() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")}
    moved = {"dagfactory", "hooks", "operators", "alerts", "airflow_sqlite", "airflow_setup", "provider"}
    assert top & moved == set()
    assert moved - {"alerts", "airflow_sqlite", "airflow_setup"} | {"callbacks", "sqlite_connect", "setup"} <= {
        p.stem for p in (PACKAGE / "airflow").glob("*.py")
    }


def test_no_module_imports_the_cli_back() -> None:
    """``cli`` only dispatches (``COMMANDS``); the commands share ``cli_options``, so there is no import cycle.

    (Callers of the entry point, such as the DAG factory's local tasks running ``cli.execute``, may import it.)
    """
    from binance_extractor import cli

    command_modules = {m for m, _, _ in cli.COMMANDS.values()} | {"binance_extractor.cli_options"}
    offenders = []
    for path in modules():
        rel = path.relative_to(PACKAGE)
        if "binance_extractor." + ".".join(rel.with_suffix("").parts) not in command_modules:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                node.module == "binance_extractor.cli"
                or (node.module == "binance_extractor" and any(a.name == "cli" for a in node.names))
            ):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


def test_every_command_of_the_table_is_built_and_runs_through_it() -> None:
    import argparse

    from binance_extractor import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(cli.COMMANDS)
    assert all(callable(cli._function(name, 1)) for name in cli.COMMANDS)
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler) and "ImportError" in ast.dump(n)]
    assert "getattr(telemetry" not in (PACKAGE / "cli.py").read_text()


# Where a timeframe may be read from text: the places a string enters the library. Everything past them passes
# ``Timeframe`` / ``Dataset`` objects along (issue #14: interval strings used to be re-parsed in 38 places).
TIMEFRAME_BOUNDARIES = {
    "kinds.py": "Dataset.of_table / Dataset.parse: table names and user input",
    "catalog.py": "dataset_of_table: the one place a table name is read",
    "models.py": "Kline.timeframe: the exchange's interval field of a validated row",
    "data_cli.py": "--interval",
    "stream/cli.py": "--intervals",
    "stream/messages.py": "the WebSocket kline event's interval",
    "gaps/settings.py": "--table and the config's timeframes",
    "orchestration.py": "the manual DAG's form",
    "jobspecs.py": "ExtractionSpec.from_dict: a spec read back from XCom",
    "airflow/dagfactory.py": "DAG files / config.yaml naming a timeframe; the manual request read back from XCom",
}


def timeframe_parses(tree: ast.AST) -> list[int]:
    """Lines calling ``timeframes.parse(...)`` (or ``parse`` imported from ``binance_extractor.timeframes``)."""
    aliases = {
        a.asname or a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "binance_extractor.timeframes"
        for a in n.names
        if a.name == "parse"
    }
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        qualified = isinstance(f, ast.Attribute) and f.attr == "parse" and ast.unparse(f.value) == "timeframes"
        if qualified or (isinstance(f, ast.Name) and f.id in aliases):
            lines.append(node.lineno)
    return lines


def test_timeframes_are_parsed_only_where_text_enters() -> None:
    offenders = []
    for path in modules():
        rel = str(path.relative_to(PACKAGE))
        if rel == "timeframes.py" or rel in TIMEFRAME_BOUNDARIES:
            continue
        offenders += [f"{rel}:{line}" for line in timeframe_parses(ast.parse(path.read_text()))]
    assert offenders == []
    source = "from binance_extractor.timeframes import parse as p\np('5m')\ntimeframes.parse('1h')\nx.parse('y')\n"
    assert timeframe_parses(ast.parse(source)) == [2, 3]  # the check sees both spellings, not other parsers
