"""Airflow-facing helpers: the ``fill-gaps`` argv of one task group and its UI label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from binance_extractor.gaps.models import Chunk, iso_ms


def fill_arguments(
    group: Sequence[Chunk],
    *,
    source: str = "auto",
    sinks: Sequence[str] | None = None,
    conn_ids: Mapping[str, str] | None = None,
    requested_by: str | None = None,
    xcom: bool = False,
) -> list[str]:
    """argv of ``python -m binance_extractor fill-gaps`` for one group: pods and local tasks run the same."""
    from binance_extractor.orchestration import output_options

    argv = ["fill-gaps"]
    for chunk in group:
        argv += ["--chunk", chunk.spec()]
    argv += ["--source", source]
    return argv + output_options(sinks, conn_ids, requested_by, xcom)


def chunks_of_argv(argv: Sequence[str]) -> list[Chunk]:
    args = list(argv)
    return [Chunk.parse(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "--chunk"]


def argv_label(argv: Sequence[str]) -> str:
    """UI label of a fill task: its first chunk, and how many more."""
    chunks = chunks_of_argv(argv)
    if not chunks:
        return "?"
    first = chunks[0]
    label = f"{first.table} {first.symbol} {iso_ms(first.start_ms)[:16]}"
    return label + (f" +{len(chunks) - 1}" if len(chunks) > 1 else "")
