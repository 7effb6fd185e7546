#!/usr/bin/env python3
"""`make demo`: the whole job end to end, on this machine, with no account and no credits.

1. starts the local stand-in of the 1min.ai API (scripts/fake_onemin_server.py) on a free port;
2. converts each photo in examples/ with scripts/image_to_3d.py in `auto` mode, switching the
   stand-in's result kind between them so that each import kind shows once: a depth map
   (imported as a relief), a 3D model (GLB) and a colour image (a textured plane);
3. assembles the three in out/demo.blend, side by side (the second pass runs with --resume, so it
   takes the results from the result folder and sends no new generation), and renders
   out/demo.png, 1200 px wide, on a neutral backdrop (scripts/render_docs.py: Cycles, CPU, denoised);
4. prints where everything is.

--update-docs-images also renders each import mode on its own (1200x800) and the three together,
with more samples, into the README's pictures: docs/img/mode-relief.jpg, mode-model.jpg,
mode-plane.jpg and demo.jpg.

The 3D results come from the local stand-in, which computes them from the photo on this
machine: they are NOT made by 1min.ai. To use the real service, give a real key and leave the
base URL at its default (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
EXAMPLES = ROOT / "examples"
DEMO_KEY = "demo-key-for-the-local-stand-in"

#: (photo, the stand-in's result kind, what `auto` makes of it, the docs picture it becomes)
PLAN = (
    ("astronaut.jpg", "depth", "relief (depth map as height, photo as colour)", "mode-relief.jpg"),
    ("retina.jpg", "glb", "3D model (GLB)", "mode-model.jpg"),
    ("hubble_deep_field.jpg", "color", "textured plane (colour result)", "mode-plane.jpg"),
)
#: out/demo.png: (width, height, samples); the README's pictures get more samples
DEMO_RENDER = (1200, 500, 16)
DOCS_SAMPLES = 32
MODE_RENDER = (1200, 800)


class DemoError(Exception):
    pass


def start_stand_in(log_path: Path) -> tuple[subprocess.Popen[str], str]:
    """The stand-in on a free port, as a child process; returns it and its base URL."""
    err = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "fake_onemin_server.py"), "--port", "0", "--api-key", DEMO_KEY],
        stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # "listening on http://127.0.0.1:PORT"
    if not line.startswith("listening on "):
        proc.kill()
        raise DemoError(f"the stand-in did not start (see {log_path}): {line!r}")
    return proc, line.split("listening on ", 1)[1]


def set_result(base_url: str, kind: str) -> None:
    body = json.dumps({"result": kind}).encode()
    req = urllib.request.Request(f"{base_url}/_control/result", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def convert(args: list[str], env: dict[str, str], what: str) -> None:
    cmd = [sys.executable, str(SCRIPTS / "image_to_3d.py"), *args]
    print(f"  $ image_to_3d.py {' '.join(args)}", flush=True)
    rc = subprocess.call(cmd, env=env, cwd=ROOT)
    if rc != 0:
        raise DemoError(f"{what} failed (exit code {rc})")


def render(scene: Path, outputs: list[Path], env: dict[str, str], width: int, height: int, samples: int) -> None:
    """A studio picture of `scene` (scripts/render_docs.py), in its own process like each conversion."""
    cmd = [sys.executable, str(SCRIPTS / "render_docs.py"), str(scene), *map(str, outputs),
           "--width", str(width), "--height", str(height), "--samples", str(samples)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DemoError(f"rendering {scene.name} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("render_docs: "):
            print("  " + line.removeprefix("render_docs: "), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out", help="where to write (default: out/)")
    ap.add_argument("--update-docs-images", action="store_true",
                    help="also render the README's pictures into docs/img/ (for maintainers; a few minutes)")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    parts, results = out / "demo-parts", out / "demo-results"
    for stale in (parts, results):
        shutil.rmtree(stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for target in (out / "demo.blend", out / "demo.png", out / "demo-report.json"):
        target.unlink(missing_ok=True)

    env = dict(os.environ)
    env["ONEMIN_API_KEY"] = DEMO_KEY  # never the user's real key: the stand-in has its own
    user = env.get("BLENDER_USER_RESOURCES") or tempfile.mkdtemp(prefix="onemin3d-demo-user-")
    Path(user).mkdir(parents=True, exist_ok=True)
    env["BLENDER_USER_RESOURCES"] = user

    t0 = time.monotonic()
    proc, base_url = start_stand_in(out / "demo-stand-in.log")
    env["ONEMIN_API_BASE_URL"] = base_url
    print(f"Local stand-in of the 1min.ai API at {base_url}: the 3D below is computed on this machine, "
          "not by 1min.ai.", flush=True)
    try:
        for photo, kind, made, _ in PLAN:
            print(f"\n{photo}: the stand-in returns a {kind} result -> {made}", flush=True)
            set_result(base_url, kind)
            convert([str(EXAMPLES / photo), "--mode", "auto", "--output-dir", str(parts),
                     "--result-dir", str(results), "--quiet"], env, photo)
        print("\nAll three in one scene (--resume: results from the result folder, no new generation):",
              flush=True)
        convert([*(str(EXAMPLES / p) for p, *_ in PLAN), "--mode", "auto", "--resume",
                 "--output", str(out / "demo.blend"),
                 "--result-dir", str(results), "--json", str(out / "demo-report.json"), "--quiet"],
                env, "the assembly")
        proc.terminate()  # nothing more is sent: the rest is rendering
        docs = ROOT / "docs" / "img"
        width, height, samples = DEMO_RENDER
        print("\nRendering out/demo.png:", flush=True)
        if args.update_docs_images:
            render(out / "demo.blend", [out / "demo.png", docs / "demo.jpg"], env, width, height, DOCS_SAMPLES)
            for photo, _, made, picture in PLAN:
                print(f"Rendering docs/img/{picture} ({made}):", flush=True)
                render(parts / (Path(photo).stem + ".blend"), [docs / picture], env, *MODE_RENDER, DOCS_SAMPLES)
        else:
            render(out / "demo.blend", [out / "demo.png"], env, width, height, samples)
    except DemoError as exc:
        print(f"\nmake demo: {exc}. The log is in {results / 'logs'}.", file=sys.stderr)
        return 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    if args.update_docs_images:
        print(f"\nUpdated the pictures in {ROOT / 'docs' / 'img'}")

    took = time.monotonic() - t0
    print(f"\nDone in {took:.0f} s. The 3D came from the local stand-in, not from 1min.ai.")
    print(f"  scene:    {out / 'demo.blend'}   (open it in Blender 4.2 or newer)")
    print(f"  picture:  {out / 'demo.png'}")
    print(f"  per mode: {parts}/  (one .blend per photo)")
    print(f"  report:   {out / 'demo-report.json'}")
    print(f"  results:  {results}/  (the downloaded results and their history)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
