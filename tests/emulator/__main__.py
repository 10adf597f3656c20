"""Run the emulator standalone: ``python -m tests.emulator --port 8765 [--latency 0.04]`` until Ctrl-C."""

from __future__ import annotations

import argparse
import threading

from tests.emulator.server import Emulator


def _write_symbols(emu: Emulator, path: str, count: int | None) -> None:
    """The symbol list of a scale run (``BINANCE_SYMBOLS``), so a script needs no second source of names."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join(emu.perpetuals(count)) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--weight-limit", type=int, default=2400)
    ap.add_argument("--window-seconds", type=int, default=60)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    ap.add_argument("--ban-seconds", type=int, default=120)
    ap.add_argument("--contracts", type=int, default=0, help="extra synthetic USDT perpetuals (C0000USDT...)")
    ap.add_argument("--symbols-file", help="write the first --list-symbols perpetuals here, comma-separated")
    ap.add_argument("--list-symbols", type=int, default=0, help="how many symbols --symbols-file gets (0: all)")
    args = ap.parse_args()
    emu = Emulator(
        host=args.host,
        port=args.port,
        weight_limit=args.weight_limit,
        window_seconds=args.window_seconds,
        latency=args.latency,
        ban_seconds=args.ban_seconds,
        contracts=args.contracts,
    )
    emu.start()
    if args.symbols_file:
        _write_symbols(emu, args.symbols_file, args.list_symbols or None)
    print(
        f"emulator listening on {emu.url} (archive {emu.archive_url}, streams {emu.ws_url}); Ctrl-C to stop",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
