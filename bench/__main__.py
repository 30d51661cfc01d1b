"""`python -m bench [import] [resolve] [login] [console]` (all by default). See README "Performance"."""

from __future__ import annotations

import argparse
import importlib
import sys

SUITES = ["import", "resolve", "login", "console"]


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], help="which benchmarks (default: all)")
    parser.add_argument("--quick", action="store_true", help="small data, for checking the harness works")
    args, rest = parser.parse_known_args()
    chosen = args.suites or SUITES
    status = 0
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}_bench")
        except ModuleNotFoundError:
            print(f"[{name}] not available yet", file=sys.stderr)
            status = 1
            continue
        status |= int(module.run(quick=args.quick, argv=rest) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
