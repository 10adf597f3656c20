"""``python -m binance_extractor``: the CLI entry point (also the container entrypoint)."""

import sys

from binance_extractor.cli import main

if __name__ == "__main__":
    sys.exit(main())
