"""The README's picture of a web GLB in <model-viewer>: docs/img/web-model-viewer.png, taken by headless Chromium.

    .venv/bin/python scripts/render_web_page.py [--out docs/img/web-model-viewer.png]
                                                [--model-viewer path/to/model-viewer.min.js]

1. Builds a relief of examples/astronaut.jpg (1024 × 768, the stand-in's depth map, resolution
   1024) with the bpy wheel and writes it with `export_web`, as `--export web` does.
2. Takes <model-viewer> from npm (`npm pack @google/model-viewer`: its dist/model-viewer.min.js
   bundles three.js), unless --model-viewer names the file.
3. Serves the page of the README's snippet and the GLB from 127.0.0.1 (Python's http.server,
   with one extra URL, see below), and takes the screenshot with Debian's `chromium`
   (`apt-get install chromium`): headless, WebGL through SwiftShader, no proxy, no GPU.

Chromium takes the screenshot at the page's load event, long before <model-viewer> has decoded
the texture and drawn the model (and `--virtual-time-budget` does not wait for that either: it
ends on a blank page). So the screenshot page (not the README's snippet) holds its load event
with an image the server sends only once the page, 1.5 s after <model-viewer>'s "load",
asks for /release (two URLs Python's http.server gets here, besides the files).

Not part of `make test`: it needs Chromium and npm's registry.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

WIDTH, HEIGHT = 1200, 800
#: seconds the page may take to show the model before the screenshot is taken anyway
HOLD_LIMIT = 120

#: what the README shows: the GLB upright (a relief lies in Blender's XY plane, facing up),
#: turned a little so the relief shows, with orbit controls
SNIPPET = """\
<script type="module" src="model-viewer.min.js"></script>
<model-viewer src="astronaut.web.glb" alt="A relief of a photo, made with 1min3d"
              orientation="0deg 90deg 0deg" camera-orbit="-35deg 75deg auto"
              camera-controls shadow-intensity="1" style="width: 100%; height: 600px">
</model-viewer>"""

PAGE = """\
<!doctype html>
<html><head><meta charset="utf-8"><title>1min3d web export</title>
<style>
  body {{ margin: 0; background: #eef1f4; }}
  model-viewer {{ height: 100vh !important; --progress-bar-height: 0; }}
</style></head>
<body>
<img id="hold" src="/hold" alt="" style="display: none">
{snippet}
<script>
  // screenshot only: the page's load event (and so the screenshot) waits for the /hold image,
  // which the server sends once the page asks for /release, when the model has been drawn
  const viewer = document.querySelector("model-viewer");
  viewer.setAttribute("loading", "eager");
  viewer.setAttribute("interaction-prompt", "none");
  viewer.addEventListener("load", () => setTimeout(() => fetch("/release"), 1500));
</script>
</body></html>
"""


def build_glb(folder: Path) -> Path:
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(folder / "blender-user"))
    import bpy
    import numpy as np
    from fake_onemin_server import depth_map
    from PIL import Image

    from onemin3d_addon.blender import build_relief
    from onemin3d_addon.blender.export_web import export_web

    photo = Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB").resize((1024, 768),
                                                                                  Image.Resampling.LANCZOS)
    photo.save(folder / "astronaut.jpg", quality=92)
    Image.fromarray((depth_map(photo, None) * 255 + 0.5).astype(np.uint8)).save(folder / "astronaut-depth.png")
    bpy.ops.wm.read_homefile(use_empty=True)
    relief = build_relief.import_relief(folder / "astronaut.jpg", folder / "astronaut-depth.png",
                                        collection=bpy.context.scene.collection, resolution=1024,
                                        name="astronaut")
    glb = folder / "astronaut.web.glb"
    summary = export_web(relief, glb)
    print(f"{glb.name}: {summary.triangles:,} triangles, {glb.stat().st_size / 1e6:.2f} MB", flush=True)
    return glb


def model_viewer(folder: Path, given: Path | None) -> Path:
    target = folder / "model-viewer.min.js"
    if given is not None:
        shutil.copyfile(given, target)
        return target
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is not installed: install it (apt-get install npm), or pass --model-viewer FILE.")
    out = subprocess.run([npm, "pack", "@google/model-viewer", "--pack-destination", str(folder)],
                         capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(folder / out[-1]) as tar:
        member = tar.extractfile("package/dist/model-viewer.min.js")
        assert member is not None
        target.write_bytes(member.read())
    return target


class _Handler(http.server.SimpleHTTPRequestHandler):
    released = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/release":
            _Handler.released.set()
        elif self.path == "/hold":
            _Handler.released.wait(HOLD_LIMIT)
        else:
            super().do_GET()
            return
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def screenshot(folder: Path, out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Chromium is not installed: apt-get install chromium (Debian), then run this again.")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shot = folder / "shot.png"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                        "--enable-unsafe-swiftshader", "--no-proxy-server", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", url],
                       capture_output=True, timeout=HOLD_LIMIT + 120, check=True)
    finally:
        server.shutdown()
    from PIL import Image

    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        if rgb.width > WIDTH:
            rgb = rgb.resize((WIDTH, round(rgb.height * WIDTH / rgb.width)), Image.Resampling.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        rgb.save(out, optimize=True)
    print(f"{out}: {rgb.width}×{rgb.height}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "web-model-viewer.png")
    parser.add_argument("--model-viewer", type=Path, help="model-viewer.min.js (default: from npm)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="1min3d-web-") as tmp:
        folder = Path(tmp)
        build_glb(folder)
        model_viewer(folder, args.model_viewer)
        (folder / "index.html").write_text(PAGE.format(snippet=SNIPPET), encoding="utf-8")
        screenshot(folder, args.out)
    os._exit(0)  # bpy 4.2's exit handlers can crash after Python is gone (see cli/main.py)


if __name__ == "__main__":
    main()
