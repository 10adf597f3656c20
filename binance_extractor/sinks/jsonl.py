"""JSON Lines sink: one object per line (decimals as strings, ISO times), to a file or stdout (``-``).

For piping into other tools and for inspection: a write-only ``Sink``, not a ``Store``. It appends and has
no key index, so it never decides where a run starts (every run uses its own range), re-runs append again,
and it keeps no audit runs, gap ledger or retention; readers keep the last line per key.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from binance_extractor.errors import SinkError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Row, Sink, check_rows


class JsonlSink(Sink):
    name = "jsonl"

    def __init__(self, path: str | Path = "-") -> None:
        self.path = str(path)

    def ensure_schema(self) -> None:
        if self.path != "-":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    def write(self, dataset: Dataset, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        check_rows(dataset, rows)
        prefix = '{"table":' + json.dumps(dataset.table) + ","
        text = "".join(prefix + r.model_dump_json()[1:] + "\n" for r in rows)  # build first: all or nothing
        try:
            if self.path == "-":
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(text)
        except OSError as exc:
            raise SinkError(f"jsonl sink ({self.path}): {exc.strerror or exc}") from None
        return len(rows)

    def close(self) -> None:
        return None
