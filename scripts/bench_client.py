#!/usr/bin/env python3
"""Benchmark (`python scripts/bench.py client`): what the pipeline adds on top of the network and the service.

A 2048×2048 photo-like JPEG goes through `pipeline.run` (prepare → upload → generate → download)
against the local stand-in with a generation latency of 1 s. The pipeline's overhead is its total
time minus that latency. The reference, measured in the same run and interleaved with it, is the
raw transfer of the same bytes through plain `requests`: a multipart POST of the same file to the
same upload endpoint, plus a GET of the same result file. Target (issue 2):

    overhead ≤ 15 % × raw transfer + 50 ms          (medians of --runs runs)

The stand-in runs in its own process by default (`--in-process` to share this one), so its
request parsing and result computing do not compete with the client for the GIL.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
for _p in (str(ROOT), str(SCRIPTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

API_KEY = "bench-key-0123456789abcdef"
SHARE = 0.15
SLACK = 0.050


def make_photo(path: Path, side: int = 2048, seed: int = 11) -> Path:
    """A photo-like JPEG that compresses like a real photo (~1.2 MB at 2048², quality 92): soft
    multi-scale structure and lighting, large objects with hard edges, a dense clutter of small
    detail (foliage, gravel, fabric), lens softness and sensor grain."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    field = np.zeros((side, side, 3), np.float32)
    for octave in range(2, 9):  # 8 px … 512 px structure, weaker as it gets finer
        n = 2**octave
        small = rng.normal(0, 1, (n, n, 3)).astype(np.float32)
        field += np.stack([np.asarray(Image.fromarray(small[..., c]).resize((side, side), Image.Resampling.BICUBIC))
                           for c in range(3)], -1) * (60.0 / octave**1.2)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    light = 0.6 + 0.5 * np.exp(-((xx - 0.4) ** 2 + (yy - 0.35) ** 2) / 0.12)
    img = (np.array([120, 105, 90], np.float32) + field) * light[..., None]
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    count = 40_000 * side * side // (2048 * 2048)
    centres = rng.integers(0, side, (count, 2))
    radii = rng.integers(1, 9, count)
    colours = rng.integers(20, 235, (count, 3))
    for (x, y), r, c in zip(centres.tolist(), radii.tolist(), colours.tolist(), strict=True):
        draw.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=tuple(c))
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, side, 2))
        r = int(rng.integers(side // 40, side // 8))
        colour = tuple(int(c) for c in rng.integers(30, 230, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(0.7))
    grain = rng.normal(0, 3.0, (side, side, 3))
    Image.fromarray(np.clip(np.asarray(im, np.float32) + grain, 0, 255).astype(np.uint8)).save(
        path, "JPEG", quality=92)
    return path


class StandIn:
    """The stand-in, in a subprocess (default) or in this process."""

    def __init__(self, *, latency: float, result: str, in_process: bool) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.server: Any = None
        if in_process:
            from fake_onemin_server import FakeOneMinServer

            self.server = FakeOneMinServer(api_key=API_KEY, latency=latency, result=result).start()
            self.base_url = str(self.server.base_url)
            return
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "fake_onemin_server.py"), "--port", "0", "--latency", str(latency),
             "--result", result, "--api-key", API_KEY],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.close()
            raise SystemExit(f"the stand-in did not start: {line!r}")
        self.base_url = line.removeprefix("listening on ")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _ignore(stage: str, fraction: float, message: str) -> None:
    """A progress sink, as the job runner has one: its cost is part of the pipeline's."""


def raw_transfer(base_url: str, photo: Path, result_url: str) -> tuple[float, float, int]:
    """Plain requests, the way anyone would write it: (upload s, download s, result bytes)."""
    import requests

    t0 = time.perf_counter()
    with open(photo, "rb") as fh:
        up = requests.post(f"{base_url}/api/assets", files={"asset": (photo.name, fh, "image/jpeg")},
                           headers={"API-KEY": API_KEY}, timeout=60)
    up.raise_for_status()
    t1 = time.perf_counter()
    down = requests.get(result_url, timeout=60)
    down.raise_for_status()
    size = len(down.content)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.py client", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="measured runs of each (default 5; medians are used)")
    ap.add_argument("--latency", type=float, default=1.0, help="the stand-in's generation latency (s)")
    ap.add_argument("--result", default="glb", choices=("glb", "depth", "color", "zip-gltf", "zip-obj"))
    ap.add_argument("--side", type=int, default=2048, help="the photo's side in pixels")
    ap.add_argument("--in-process", action="store_true", help="run the stand-in in this process")
    args = ap.parse_args(argv)

    from onemin3d_addon.core import pipeline
    from onemin3d_addon.core.client import GenerationRecord

    with tempfile.TemporaryDirectory(prefix="onemin3d-bench-client-") as tmp:
        work = Path(tmp)
        photo = make_photo(work / "photo.jpg", args.side)
        photo_size = photo.stat().st_size
        stand_in = StandIn(latency=args.latency, result=args.result, in_process=args.in_process)
        try:
            request = pipeline.Request(photo, API_KEY, work / "results", base_url=stand_in.base_url)
            # warm-up (imports, first connections, page cache), not counted
            first = pipeline.run(request)
            record: GenerationRecord = first.record
            result_url = record.download_url
            if not result_url:
                raise SystemExit("the stand-in gave no temporaryUrl")
            raw_transfer(stand_in.base_url, photo, result_url)

            totals: list[float] = []
            raws: list[float] = []
            ups: list[float] = []
            downs: list[float] = []
            stages: dict[str, list[float]] = {}
            result_size = 0
            for i in range(args.runs):
                order = (0, 1) if i % 2 == 0 else (1, 0)  # interleaved, alternating, against drift
                for which in order:
                    if which == 0:
                        t0 = time.perf_counter()
                        res = pipeline.run(request, cancel=threading.Event(), progress=_ignore)
                        totals.append(time.perf_counter() - t0)
                        for k, v in res.timings.items():
                            stages.setdefault(k, []).append(v)
                        res.file.unlink()
                    else:
                        up, down, result_size = raw_transfer(stand_in.base_url, photo, result_url)
                        ups.append(up)
                        downs.append(down)
                        raws.append(up + down)
        finally:
            stand_in.close()

    med = statistics.median
    total = med(totals)
    raw = med(raws)
    overhead = total - args.latency
    budget = SHARE * raw + SLACK
    ok = overhead <= budget

    def ms(x: float) -> str:
        return f"{x * 1000:9.1f} ms"

    print(f"client benchmark: {args.side}×{args.side} JPEG ({photo_size / 1e6:.2f} MB), result {args.result} "
          f"({result_size / 1e6:.2f} MB), "
          f"stand-in latency {args.latency:.3f} s ({'in-process' if args.in_process else 'subprocess'}), "
          f"median of {args.runs} runs")
    print(f"  {'reference: plain requests upload':<44}{ms(med(ups))}")
    print(f"  {'reference: plain requests download':<44}{ms(med(downs))}")
    print(f"  {'reference: raw transfer (R)':<44}{ms(raw)}   1.00× R")
    print(f"  {'pipeline.run total':<44}{ms(total)}")
    for stage in ("prepare", "upload", "generate", "download"):
        if stage in stages:
            value = med(stages[stage]) - (args.latency if stage == "generate" else 0.0)
            label = f"  stage {stage}" + (" − latency" if stage == "generate" else "")
            print(f"  {label:<44}{ms(value)}   {value / raw:5.2f}× R")
    print(f"  {'overhead = total − latency (O)':<44}{ms(overhead)}   {overhead / raw:5.2f}× R")
    print(f"  {'budget = 15% × R + 50 ms (B)':<44}{ms(budget)}   {budget / raw:5.2f}× R")
    print(f"  {'O / B':<44}{overhead / budget:9.2f}×     {'PASS' if ok else 'FAIL'}"
          f" (overhead ≤ 15% of raw transfer + 50 ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
