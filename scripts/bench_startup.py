"""Benchmark (`python scripts/bench.py startup`, or run this file): what enabling the add-on costs, against enabling Blender's own glTF add-on in the same way (issue 13).

Each figure comes from a fresh Python process with the bpy wheel already imported (as Blender
is before it enables its add-ons): the add-on is enabled with `addon_utils.enable`, the way
Blender does it, timed around that one call. The reference is `io_scene_gltf2` enabled the same
way in a fresh process of its own (disabled first and its modules dropped, because the wheel
enables it at start-up), so both pay their imports and their registration. The two alternate,
`--runs` times each, after one warm-up run of each that writes the bytecode of both into a
temporary cache (`PYTHONPYCACHEPREFIX`): what every Blender start after the first costs. That
first start, which compiles both, is printed for information.

Prints the medians and their ratio; target: enabling ours costs at most 3× glTF's. Also fails
when enabling the add-on loads requests, urllib3 or Pillow (they belong to the first job).
Exit status 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 3.0
HEAVY = ("requests", "urllib3", "PIL", "charset_normalizer", "idna", "certifi")

_PROBE = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
import bpy, addon_utils

module = {module!r}
if module in sys.modules or addon_utils.check(module)[1]:
    addon_utils.disable(module, default_set=True)
    for name in [n for n in sys.modules if n == module or n.startswith(module + ".")]:
        del sys.modules[name]
before = set(sys.modules)
start = time.perf_counter()
mod = addon_utils.enable(module, default_set=True)
seconds = time.perf_counter() - start
assert mod is not None, "the add-on did not enable"
new = sorted(set(sys.modules) - before)
heavy = sorted({{n.split(".")[0] for n in new}} & set({heavy!r}))
print("RESULT " + json.dumps({{"ms": seconds * 1000.0, "modules": len(new), "heavy": heavy}}), flush=True)
"""


def measure(module: str, env: dict[str, str]) -> dict[str, object]:
    """Enable `module` in a fresh process; its time (ms), how many modules it loaded, which heavy ones."""
    script = _PROBE.format(root=str(ROOT), module=module, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"enabling {module} failed:\n{proc.stderr[-2000:]}")
    result: dict[str, object] = json.loads(lines[-1][len("RESULT "):])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.py startup", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs of each (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onemin3d-bench-startup-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")  # warm bytecode, never written into the repo
        env["BLENDER_USER_RESOURCES"] = str(Path(tmp) / "user")
        ours_mod, ref_mod = "onemin3d_addon", "io_scene_gltf2"
        cold = {name: float(measure(name, env)["ms"]) for name in (ours_mod, ref_mod)}  # also writes the bytecode
        ours: list[float] = []
        ref: list[float] = []
        heavy: set[str] = set()
        loaded = 0
        for _ in range(max(1, args.runs)):
            ref.append(float(measure(ref_mod, env)["ms"]))
            got = measure(ours_mod, env)
            ours.append(float(got["ms"]))
            heavy |= set(got["heavy"])  # type: ignore[arg-type]
            loaded = int(got["modules"])  # type: ignore[call-overload]
    ours_ms, ref_ms = statistics.median(ours), statistics.median(ref)
    ratio = ours_ms / ref_ms
    ok = ratio <= TARGET and not heavy
    print(f"bench startup: addon_utils.enable in fresh processes, median of {len(ours)} each, warm bytecode")
    print(f"{'':34}{'median ms':>10}{'min':>8}{'max':>8}")
    print(f"{'onemin3d_addon':34}{ours_ms:10.2f}{min(ours):8.2f}{max(ours):8.2f}   ({loaded} modules loaded)")
    print(f"{'io_scene_gltf2 (reference)':34}{ref_ms:10.2f}{min(ref):8.2f}{max(ref):8.2f}")
    print(f"{'ratio ours / glTF':34}{ratio:10.2f}   target ≤ {TARGET:g}   {'PASS' if ratio <= TARGET else 'FAIL'}")
    print(f"first start (bytecode compiled): ours {cold[ours_mod]:.1f} ms, glTF {cold[ref_mod]:.1f} ms, "
          f"ratio {cold[ours_mod] / cold[ref_mod]:.2f} (information)")
    print(f"heavy modules loaded by enabling: {', '.join(sorted(heavy)) or 'none'}   "
          f"{'PASS' if not heavy else 'FAIL'} (none of {', '.join(HEAVY[:3])})")
    print("targets: " + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
