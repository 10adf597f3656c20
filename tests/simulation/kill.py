"""DAG task processes killed between a write and its commit (SIGKILL at the worst instant), inside one process.

A kill is armed at a drawn instant: the next DAG task that runs dies at the commit of its k-th write transaction.
The transaction's statements have run and nothing is committed (the database rolls back what a dead connection
left). From then on the dead task's every store call fails too, so nothing it would do in a ``finally`` (its
audit row's outcome, a ledger row, a "not fillable yet" row) happens, as after a real SIGKILL. The simulation
then treats the task as failed, as Airflow does with a task whose process vanished, and the later runs heal.

The kill is raised as ``Killed`` (a ``BaseException``: no ``except Exception`` in the library catches it) from the
SQL stores' one transaction function, ``SqlCore._tx``, which every write of every SQL store goes through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from binance_extractor.sinks.sql_core import SqlCore


class Killed(BaseException):
    """The task's process died: raised at a commit, and at every store call after it."""


class TaskKilled(Exception):
    """What the scheduler sees of a killed task: it failed (``execute`` catches it like any failure)."""


class Reaper:
    """Arms kills and applies them to the DAG task running inside ``task()``."""

    def __init__(self) -> None:
        self.pending: list[int] = []  # armed kills: the write transaction (1-based) of the next task to die at
        self.kills = 0
        self._active = False
        self._dead = False
        self._writes = 0
        self._original: Callable[..., Any] | None = None

    def arm(self, at_write: int) -> None:
        self.pending.append(at_write)

    @contextlib.contextmanager
    def task(self) -> Iterator[None]:
        """One DAG task's process: a ``Killed`` inside becomes ``TaskKilled`` once the task is gone."""
        self._active, self._dead, self._writes = True, False, 0
        try:
            yield
        except Killed:
            self.kills += 1
            raise TaskKilled("the task's process was killed between a write and its commit") from None
        finally:
            self._active, self._dead = False, False

    def install(self) -> None:
        original = SqlCore._tx
        self._original = original
        reaper = self

        def _tx(store: SqlCore, fn: Callable[[Any], Any], write: bool = True) -> Any:
            if reaper._active and reaper._dead:
                raise Killed()
            if not (reaper._active and write and reaper.pending):
                return original(store, fn, write)
            reaper._writes += 1
            if reaper._writes < reaper.pending[0]:
                return original(store, fn, write)

            def dies_before_commit(cur: Any) -> Any:
                fn(cur)  # every statement of the transaction has run ...
                reaper.pending.pop(0)
                reaper._dead = True
                store._reset()  # ... and the process is gone: its connection closes without a commit
                raise Killed()

            return original(store, dies_before_commit, write)

        SqlCore._tx = _tx  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._original is not None:
            SqlCore._tx = self._original  # type: ignore[method-assign]
            self._original = None
