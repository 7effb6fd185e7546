#!/usr/bin/env python3
"""Benchmark (`python scripts/bench.py batch`, or run this file): the headless batch converter's parallelism.

16 photos of 1024×1024 go through scripts/image_to_3d.py against the local stand-in with 1 s of
generation latency, once with --jobs 1 and once with --jobs 4. For each run it prints the wall
time of the batch and its ratio to the ideal, ceil(16 / jobs) × 1 s + the Blender time (imports and
the final save, which run on the main thread). Target: at most 1.25× the ideal at --jobs 4.

The wall time is the batch's own (from the first submission to the saved scene, as the report
records it), so the interpreter's and bpy's start-up (about a second, the same at any --jobs)
is printed apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
EXAMPLES = ROOT / "examples"
TARGET = 1.25


def make_photos(folder: Path, count: int, side: int) -> list[Path]:
    """`count` distinct side×side JPEGs made from the example photos (crops, flips, tints)."""
    from PIL import Image, ImageOps

    sources = sorted(EXAMPLES.glob("*.jpg"))
    if not sources:
        raise SystemExit(f"no example photos in {EXAMPLES}")
    out = []
    for i in range(count):
        im = Image.open(sources[i % len(sources)]).convert("RGB")
        w, h = im.size
        s = min(w, h)
        k = i // len(sources)
        inset = int(s * 0.04 * (k % 4))
        im = im.crop(((w - s) // 2 + inset, (h - s) // 2 + inset, (w + s) // 2 - inset, (h + s) // 2 - inset))
        if k % 2:
            im = ImageOps.mirror(im)
        im = im.resize((side, side), Image.Resampling.LANCZOS)
        tint = Image.new("RGB", im.size, ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256))
        im = Image.blend(im, tint, 0.08)
        path = folder / f"photo-{i:02d}.jpg"
        im.save(path, "JPEG", quality=90)
        out.append(path)
    return out


def run_batch(photos: list[Path], work: Path, base_url: str, api_key: str, jobs: int,
              extra: list[str]) -> dict[str, float]:
    tag = f"jobs{jobs}"
    report = work / f"{tag}.json"
    cmd = [sys.executable, str(SCRIPTS / "image_to_3d.py"), *map(str, photos),
           "--output", str(work / f"{tag}.blend"), "--result-dir", str(work / f"{tag}-results"),
           "--json", str(report), "--jobs", str(jobs), "--quiet", *extra]
    env = dict(os.environ, ONEMIN_API_KEY=api_key, ONEMIN_API_BASE_URL=base_url)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    process_wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"the --jobs {jobs} batch failed (exit code {proc.returncode})")
    data = json.loads(report.read_text(encoding="utf-8"))
    timings = data["timings"]
    blender = sum(i["timings"].get("import", 0.0) for i in data["items"])
    blender += data.get("scene_timings", {}).get("save", 0.0)
    return {"wall": timings["batch"], "startup": timings["startup"], "process": process_wall,
            "blender": blender, "converted": data["summary"]["converted"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.py batch", description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--latency", type=float, default=1.0, help="the stand-in's generation latency (s)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--async", dest="use_async", action="store_true", help="run the batches with --async")
    args = ap.parse_args(argv)

    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="onemin3d-bench-user-"))
    sys.path.insert(0, str(SCRIPTS))
    from fake_onemin_server import FakeOneMinServer

    extra = ["--async", "--poll-interval", "0.2"] if args.use_async else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="onemin3d-bench-batch-") as tmp:
        work = Path(tmp)
        photos = make_photos(work, args.images, args.side)
        with FakeOneMinServer(latency=args.latency, result="depth") as server:
            for jobs in args.jobs:
                before = server.count("POST", "/api/features")
                r = run_batch(photos, work, server.base_url, server.api_key, jobs, extra)
                r["generations"] = server.count("POST", "/api/features") - before
                ideal = math.ceil(args.images / jobs) * args.latency + r["blender"]
                rows.append((jobs, r, ideal, r["wall"] / ideal))

    print(f"batch: {args.images} photos {args.side}×{args.side}, stand-in latency {args.latency:g} s, "
          f"{'async' if args.use_async else 'sync'}, auto mode (depth → relief, resolution 512)")
    print(f"{'jobs':>4}  {'wall s':>7}  {'blender s':>9}  {'ideal s':>7}  {'ratio':>6}  {'startup s':>9}  "
          f"{'process s':>9}  {'converted':>9}")
    for jobs, r, ideal, ratio in rows:
        print(f"{jobs:>4}  {r['wall']:7.2f}  {r['blender']:9.2f}  {ideal:7.2f}  {ratio:5.2f}×  "
              f"{r['startup']:9.2f}  {r['process']:9.2f}  {int(r['converted']):>9}")
    print("ideal = ceil(images / jobs) × latency + blender (imports + final save, main thread); "
          "wall excludes start-up")
    four = [ratio for jobs, _, _, ratio in rows if jobs == 4]
    ok = True
    if four:
        ok = four[0] <= TARGET
        print(f"{'PASS' if ok else 'FAIL'}: --jobs 4 at {four[0]:.2f}× the ideal (target ≤ {TARGET:.2f}×)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
