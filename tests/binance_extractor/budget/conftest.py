"""A private redis-server per test, for stores that go away (the shared Redis on 6379 is never stopped)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.clock import real_clock_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A private redis-server on a free port (the shared one is never stopped)."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        env=real_clock_env(os.environ),  # a server keeps the machine's clock (and never starts under libfaketime)
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        proc.wait()
        pytest.fail(f"redis-server on port {port} did not start")
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait()
