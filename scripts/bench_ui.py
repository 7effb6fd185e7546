"""Stand-alone benchmark (bpy wheel + the local stand-in): how long submit() and each main-thread pump() tick take while jobs run.

    python scripts/bench.py ui            # or: python scripts/bench_ui.py [--jobs 4] [--latency 2]

Enables the add-on in a hermetic Blender user folder, starts the stand-in with the given
generation latency, submits N jobs at once (1024x1024 JPEGs) and drives them by calling the
runtime's pump() every few milliseconds, as Blender's timer would. It prints the submit latency
and the p50, p99 and max tick time, apart from the ticks that imported a result (an import is
one undo step and is allowed to take longer). Exit status 1 when a target is missed:
submit < 50 ms, max tick < 5 ms outside import ticks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBMIT_TARGET = 0.050
TICK_TARGET = 0.005


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _photo(path: Path, seed: int, side: int = 1024) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    base = np.stack([x * 200 + 30, y * 180 + 40, (1 - x) * 150 + 50], axis=-1)
    img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img, "RGB").save(path, "JPEG", quality=90)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.py ui", description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=4, help="jobs submitted at once (default 4)")
    ap.add_argument("--latency", type=float, default=2.0, help="stand-in generation latency, s (default 2)")
    ap.add_argument("--interval", type=float, default=0.005, help="pause between ticks, s (default 0.005)")
    args = ap.parse_args(argv)

    # Before bpy is imported: keep Blender's user folders out of the home directory.
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="onemin3d-bench-user-"))
    for p in (ROOT, ROOT / "scripts"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import bpy  # first: it puts Blender's script modules (addon_utils) on sys.path
    from fake_onemin_server import FakeOneMinServer

    addon_utils = importlib.import_module("addon_utils")

    work = Path(tempfile.mkdtemp(prefix="onemin3d-bench-ui-"))
    photos = [_photo(work / f"photo{i}.jpg", i) for i in range(args.jobs)]
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.context.preferences.system.use_online_access = True
    server = FakeOneMinServer(latency=0.0).start()
    module = "onemin3d_addon"
    try:
        if addon_utils.enable(module, default_set=True) is None:
            print("the add-on did not enable", file=sys.stderr)
            return 2
        prefs = bpy.context.preferences.addons[module].preferences
        prefs.api_key = server.api_key
        prefs.base_url = server.base_url
        prefs.result_folder = str(work / "results")
        prefs.parallel_jobs = min(8, max(1, args.jobs))

        from onemin3d_addon import api
        from onemin3d_addon.blender import runtime

        # Warm-up, not measured: the first job pays for lazy imports (requests, Pillow, numpy paths).
        warm = api.submit(photos[0], mode="plane")
        warm.wait(timeout=60)

        server.latency = args.latency
        submit_times: list[float] = []
        jobs = []
        for photo in photos:
            start = time.perf_counter()
            jobs.append(api.submit(photo, mode="auto"))
            submit_times.append(time.perf_counter() - start)

        ticks: list[float] = []
        import_ticks: list[float] = []
        started = time.perf_counter()
        deadline = time.monotonic() + args.latency * args.jobs + 120
        while not all(job.done for job in jobs):
            if time.monotonic() > deadline:
                print("jobs did not finish in time", file=sys.stderr)
                return 2
            results_before = sum(job.result is not None for job in jobs)
            start = time.perf_counter()
            runtime.pump()
            elapsed = time.perf_counter() - start
            if sum(job.result is not None for job in jobs) != results_before:
                import_ticks.append(elapsed)
            else:
                ticks.append(elapsed)
            time.sleep(args.interval)
        wall = time.perf_counter() - started
        states = [job.state for job in jobs]
    finally:
        if addon_utils.check(module)[1]:
            addon_utils.disable(module, default_set=True)
        server.close()

    ms = 1000.0
    print(f"bench ui: {args.jobs} jobs at once, stand-in latency {args.latency:g} s, "
          f"tick every {args.interval * ms:g} ms; all done in {wall:.2f} s ({', '.join(sorted(set(states)))})")
    print(f"{'':28}{'p50':>9}{'p99':>9}{'max':>9}   target")
    print(f"{'submit (ms)':28}{_percentile(submit_times, .5) * ms:9.2f}{_percentile(submit_times, .99) * ms:9.2f}"
          f"{max(submit_times) * ms:9.2f}   max < {SUBMIT_TARGET * ms:g}")
    print(f"{f'pump tick, {len(ticks)} ticks (ms)':28}{_percentile(ticks, .5) * ms:9.3f}"
          f"{_percentile(ticks, .99) * ms:9.3f}{max(ticks) * ms:9.3f}   max < {TICK_TARGET * ms:g}")
    if import_ticks:
        print(f"{f'import ticks, {len(import_ticks)} (ms)':28}{_percentile(import_ticks, .5) * ms:9.1f}"
              f"{_percentile(import_ticks, .99) * ms:9.1f}{max(import_ticks) * ms:9.1f}   (not bounded)")
    ok = max(submit_times) < SUBMIT_TARGET and max(ticks) < TICK_TARGET and all(s == "imported" for s in states)
    print("targets: " + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
