#!/usr/bin/env python3
"""Command line: `python scripts/bench.py client|import|ui|batch|startup|cutout|export [ARGS]` runs one benchmark (scripts/bench_<name>.py).

Each benchmark lives in its own module exposing `main(argv) -> int` and prints its figures as
ratios against a reference measured in the same run, with PASS/FAIL against its target; the
exit status is 0 when every target held, 1 when one did not, 2 on a usage error.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent

BENCHMARKS = {
    "client": "the pipeline's overhead over the stand-in's latency, against raw transfer (issue 2)",
    "import": "scene import against the numpy lower bound and Blender's own routes (issue 3)",
    "ui": "submit, operator, pump ticks, cancel, unregister and shutdown, against a job and an import (issues 4, 12)",
    "batch": "the headless batch converter's wall time against the ideal (issue 5)",
    "startup": "enabling the add-on against enabling Blender's glTF add-on, in fresh processes (issue 13)",
    "cutout": "the cut-out relief's boundary error and watertightness, its build time against the rectangle's "
              "(issue 15)",
    "export": "the web export's simplified relief against the full relief and Blender's Decimate (issue 16)",
}


def usage() -> str:
    lines = ["usage: python scripts/bench.py NAME [ARGS]   (NAME --help for its options)", "", "benchmarks:"]
    lines += [f"  {name:<8} {what}" for name, what in BENCHMARKS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    for path in (str(SCRIPTS), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(f"bench_{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench_{name}":
            raise
        print(f"the {name!r} benchmark is not written yet (scripts/bench_{name}.py)", file=sys.stderr)
        return 2
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
