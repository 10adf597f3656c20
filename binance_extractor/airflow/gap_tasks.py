"""A fill task's typed spec: its chunks, the ``fill-gaps`` argv built from them once, and its UI label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from binance_extractor.airflow.jobspecs import Output, task_kwargs
from binance_extractor.gaps.models import Chunk, iso_ms


@dataclass(frozen=True)
class FillSpec:
    """One mapped fill task: refetch the holes of ``chunks`` (consecutive weekly chunks of one group)."""

    chunks: tuple[Chunk, ...]
    source: str = "auto"
    output: Output = field(default_factory=Output)

    @property
    def symbol(self) -> None:
        """Fill tasks span several symbols: failure alerts name none (as ever)."""
        return None

    def to_argv(self) -> list[str]:
        """argv of ``python -m binance_extractor fill-gaps``: pods and local tasks run the same."""
        argv = ["fill-gaps"]
        for chunk in self.chunks:
            argv += ["--chunk", chunk.spec()]
        argv += ["--source", self.source]
        return argv + self.output.to_argv()

    @property
    def label(self) -> str:
        """UI label of a fill task: its first chunk, and how many more."""
        if not self.chunks:
            return "?"
        first = self.chunks[0]
        label = f"{first.table} {first.symbol} {iso_ms(first.start_ms)[:16]}"
        return label + (f" +{len(self.chunks) - 1}" if len(self.chunks) > 1 else "")

    def to_dict(self) -> dict[str, Any]:
        return {"chunks": [c.spec() for c in self.chunks], "source": self.source, "output": self.output.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FillSpec:
        chunks = tuple(Chunk.parse(c) for c in data.get("chunks") or [])
        return cls(chunks, str(data.get("source") or "auto"), Output.from_dict(data.get("output") or {}))

    def task_kwargs(self, *, pod: bool) -> dict[str, Any]:
        return task_kwargs(self.to_argv(), self.label, self.to_dict(), pod=pod)


def fill_spec(
    group: Sequence[Chunk],
    *,
    source: str = "auto",
    sinks: Sequence[str] | None = None,
    conn_ids: Mapping[str, str] | None = None,
    requested_by: str | None = None,
    xcom: bool = False,
) -> FillSpec:
    """The spec of one group of chunks (one mapped task instance)."""
    return FillSpec(tuple(group), source, Output.of(sinks, conn_ids, requested_by, xcom))


def fill_arguments(group: Sequence[Chunk], **options: Any) -> list[str]:
    """argv of ``python -m binance_extractor fill-gaps`` for one group (``fill_spec(...).to_argv()``)."""
    return fill_spec(group, **options).to_argv()


def chunks_of_specs(specs: Sequence[Mapping[str, Any]] | None) -> list[Chunk]:
    """Every chunk of the fill tasks planned (their ``task_kwargs``), read from the specs' fields."""
    return [c for kw in specs or [] for c in FillSpec.from_dict(kw["spec"]).chunks]
