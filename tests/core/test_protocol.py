"""core.protocol: 1min.ai's wire format without an HTTP stack; core.client keeps every name it had."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from onemin3d_addon.core import client, protocol
from onemin3d_addon.core.protocol import GenerationRecord

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_and_the_pipelines_types_import_with_requests_and_urllib3_blocked() -> None:
    probe = ("import sys, json\n"
             "for m in ('requests', 'urllib3', 'PIL'): sys.modules[m] = None\n"
             "from onemin3d_addon.core import protocol, pipeline, history, jobs\n"
             "print(json.dumps(sorted(m for m in ('requests', 'urllib3', 'PIL') if sys.modules.get(m))))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_client_still_exports_what_protocol_took_over() -> None:
    for name in ("DEFAULT_BASE_URL", "DEFAULT_ASSET_BASE_URL", "GenerationRecord", "ErrorBody", "RetryPolicy",
                 "Timeouts", "check_record", "error_from_response", "parse_error_body", "parse_record"):
        assert getattr(client, name) is getattr(protocol, name), name
    assert client.OneMinClient("k" * 20).max_download_bytes == protocol_cap()


def protocol_cap() -> int:
    from onemin3d_addon.core import results

    return results.MAX_RESULT_BYTES


def test_the_generation_body_asks_for_async_only_when_told() -> None:
    body = protocol.generation_body("assets/a.jpg", use_async=False)
    assert body == {"type": "IMAGE_3D_GENERATOR", "model": "stable-image", "promptObject": {"imageUrl": "assets/a.jpg"}}
    assert protocol.generation_body("assets/a.jpg", use_async=True)["async"] is True
    assert protocol.result_path("a/b c") == "/api/results/a%2Fb%20c"


def test_the_bodies_of_the_two_models_and_of_the_background_remover() -> None:
    assert protocol.generation_body("k", False)["model"] == "stable-image" == protocol.MODEL
    assert protocol.generation_body("k", False, protocol.TRELLIS_MODEL)["model"] == "Qubico/trellis"
    assert protocol.background_body("assets/a.jpg", use_async=False) == {
        "type": "BACKGROUND_REMOVER", "model": "stable-image",
        "promptObject": {"imageUrl": "assets/a.jpg", "output_format": "png"}}
    assert protocol.background_body("assets/a.jpg", use_async=True)["async"] is True


def test_download_addresses_come_best_first_without_duplicates_or_dot_segments() -> None:
    record = GenerationRecord("u", "SUCCESS", ("https://cdn/x.glb", "../a//b/./c.png", "https://cdn/x.glb"),
                              "https://tmp/signed?x=1", None, None)
    assert protocol.download_urls(record, "https://asset.1min.ai/") == [
        "https://tmp/signed?x=1", "https://cdn/x.glb", "https://asset.1min.ai/a/b/c.png"]
    assert protocol.asset_base_url_for("https://api.1min.ai/") == protocol.DEFAULT_ASSET_BASE_URL
    assert protocol.asset_base_url_for("http://127.0.0.1:9/") == "http://127.0.0.1:9/asset"
