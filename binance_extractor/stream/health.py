"""Is the tail alive and ready? Silent sockets and a stuck writer, served to Kubernetes probes over HTTP.

Why its own module: the tail (``tail.py``) only reports what happens (a message heard, the writer taking a batch,
making progress, finishing it); the judgement and the HTTP endpoint live here.

- **Silent sockets**: Binance sends kline updates every second or two on every stream, so a connection from
  which nothing arrived for ``ready_after_s`` is not ready and for ``live_after_s`` is dead (a half-open socket
  the ping has not caught yet, a reconnect loop that never succeeds).
- **Stuck writer**: the writer holds a batch (candles or a REST fill) and makes no progress (a write committed, a
  fill of one stream done) for ``ready_after_s`` / ``live_after_s``: the database hangs or keeps failing.

``GET /livez`` and ``GET /readyz`` answer 200 or 503 with the reasons as JSON; the Deployment's probes call them.
Times come from ``binance_extractor.clock`` (tests pin it), never from a timer.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from binance_extractor import clock, telemetry

log = logging.getLogger(__name__)

READY_AFTER_S = 90.0  # longer than the reconnect backoff's cap (30 s) plus a fill's first answer
LIVE_AFTER_S = 300.0  # restarting is the last resort: 5 minutes without a message or without writer progress


@dataclass
class Verdict:
    """One probe's answer."""

    ok: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unhealthy", "reasons": self.reasons}


class TailHealth:
    """What the probes judge: when each connection was last heard, since when the writer holds a batch."""

    def __init__(
        self, connections: int, *, ready_after_s: float = READY_AFTER_S, live_after_s: float = LIVE_AFTER_S
    ) -> None:
        self.connections = connections
        self.ready_after_ms = int(ready_after_s * 1000)
        self.live_after_ms = int(live_after_s * 1000)
        self._lock = threading.Lock()
        self._started_ms = clock.now_ms()
        self._heard: dict[int, int] = {}
        self._busy_since: int | None = None  # the writer holds a batch and has made no progress since

    # ------------------------------------------------------------------ what the tail reports

    def heard(self, index: int) -> None:
        """A message arrived on connection ``index``."""
        self._heard[index] = clock.now_ms()

    def writer_busy(self) -> None:
        """The writer took a batch off the queue."""
        with self._lock:
            if self._busy_since is None:
                self._busy_since = clock.now_ms()

    def writer_progress(self) -> None:
        """A write committed or one stream's REST fill finished: the writer is moving."""
        with self._lock:
            if self._busy_since is not None:
                self._busy_since = clock.now_ms()

    def writer_idle(self) -> None:
        """The writer finished its batch and waits on the queue."""
        with self._lock:
            self._busy_since = None

    def write_failed(self) -> None:
        telemetry.instruments.counter("binance.stream.write.failures").add(1)

    def filled(self) -> None:
        telemetry.instruments.counter("binance.stream.fills").add(1)

    # ------------------------------------------------------------------ judgement

    def _reasons(self, limit_ms: int, *, need_heard: bool) -> list[str]:
        now = clock.now_ms()
        reasons = []
        for index in range(self.connections):
            last = self._heard.get(index)
            if last is None and need_heard:
                reasons.append(f"connection {index}: no message yet")
            elif now - (last if last is not None else self._started_ms) > limit_ms:
                silent_s = (now - (last if last is not None else self._started_ms)) / 1000
                reasons.append(f"connection {index}: silent for {silent_s:.0f} s")
        with self._lock:
            busy_since = self._busy_since
        if busy_since is not None and now - busy_since > limit_ms:
            reasons.append(f"writer: no progress for {(now - busy_since) / 1000:.0f} s (database hung or failing)")
        return reasons

    def liveness(self) -> Verdict:
        reasons = self._reasons(self.live_after_ms, need_heard=False)
        return Verdict(not reasons, reasons)

    def readiness(self) -> Verdict:
        reasons = self._reasons(self.ready_after_ms, need_heard=True)
        return Verdict(not reasons, reasons)

    def report(self) -> None:
        """``binance.stream.ready`` / ``binance.stream.live`` (1 or 0) for the dashboard and the alerts."""
        telemetry.instruments.gauge("binance.stream.ready").set(int(self.readiness().ok))
        telemetry.instruments.gauge("binance.stream.live").set(int(self.liveness().ok))


def serve(health: TailHealth, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start ``/livez`` and ``/readyz`` on a daemon thread; ``server.shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/livez":
                verdict = health.liveness()
            elif path == "/readyz":
                verdict = health.readiness()
            else:
                self.send_error(404)
                return
            body = json.dumps(verdict.to_dict()).encode()
            self.send_response(200 if verdict.ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("health: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="stream-health", daemon=True).start()
    log.info("stream: health probes on http://%s:%d/livez and /readyz", host, server.server_address[1])
    return server
