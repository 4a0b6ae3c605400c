"""``make bench [B=<name>]``: run every ``bench/bench_<name>.py`` (or one), each with its ``main()``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        print(f"\n##### bench {name}", flush=True)
        try:
            importlib.import_module(f"bench.bench_{name}").main()
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            print(f"bench {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"failed benchmarks: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
