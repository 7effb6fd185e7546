"""`--dry-run` as a user runs it (scripts/image_to_3d.py in a subprocess): prices the batch, sends nothing, writes nothing, needs no key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_onemin_server import FakeOneMinServer
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "scripts" / "image_to_3d.py"


@pytest.mark.smoke
def test_dry_run_prices_every_photo_and_sends_nothing_not_even_an_upload(tmp_path: Path) -> None:
    photos = []
    for name in ("apple.jpg", "pear.png"):
        photos.append(tmp_path / name)
        Image.new("RGB", (16, 16), (200, 120, 40)).save(photos[-1])
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEMIN_")}  # no key anywhere
    with FakeOneMinServer() as stand_in:
        env["ONEMIN_API_BASE_URL"] = stand_in.base_url
        proc = subprocess.run([sys.executable, str(CLI), *map(str, photos), "--output", str(out / "scene.blend"),
                               "--json", str(out / "report.json"), "--model", "trellis", "--remove-background",
                               "--dry-run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert stand_in.count() == 0  # no key check, no upload, no generation
    assert "apple.jpg  60,000 credits" in proc.stdout and "pear.png   60,000 credits" in proc.stdout
    assert "Total: 120,000 credits for 2 of 2 photos" in proc.stdout
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["apple.jpg", "pear.png"]

    helped = subprocess.run([sys.executable, str(CLI), "--help"], env=env, capture_output=True, text=True,
                            timeout=60)
    text = " ".join(helped.stdout.split())
    assert "--dry-run" in text and "--model {stable-image,trellis}" in text and "--remove-background" in text
