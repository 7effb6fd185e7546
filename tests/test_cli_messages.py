"""The converter's messages and logs (issue 13 §4), run as a user runs it: the shim with the bpy wheel, against the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest
import test_headless_cli as headless
from fake_onemin_server import FakeOneMinServer
from test_headless_cli import KEY, cli_env, run_cli

photos = headless.photos  # the fixture


@pytest.fixture(scope="module")
def server():
    with FakeOneMinServer(api_key=KEY, result="depth") as stand_in:
        yield stand_in


def _log_of(out: Path) -> str:
    (log,) = (out / "onemin3d-results" / "logs").glob("*.log")
    return log.read_text(encoding="utf-8")


def test_verbose_prints_the_log_on_stderr_and_the_log_file_has_each_line_once(server, photos, tmp_path):
    out = tmp_path / "out"
    proc = run_cli([photos["apple"], "--output-dir", out, "--resolution", "32", "--verbose"], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    # the add-on's own log lines, from the worker threads, while Blender imports on the main thread
    assert "INFO onemin3d_addon.core.client: uploaded apple.jpg" in proc.stderr
    assert "INFO onemin3d_addon.core.pipeline: job for apple.jpg done" in proc.stderr
    log = _log_of(out)
    lines = [line for line in log.splitlines() if line.strip()]
    assert not [line for line in lines if line.startswith(("INFO ", "DEBUG ", "WARNING "))], \
        "stderr's format in the log file: a line written twice"
    assert sum("uploaded apple.jpg" in line for line in lines) == 1


def test_without_verbose_stderr_has_no_log_lines(server, photos, tmp_path):
    proc = run_cli([photos["apple"], "--output-dir", tmp_path / "out", "--resolution", "32"], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    assert "onemin3d_addon.core.client" not in proc.stderr


def test_blender_does_not_warn_of_a_name_collision_nor_reload_the_add_on(server, photos, tmp_path):
    out = tmp_path / "out"
    proc = run_cli([photos["apple"], "--output-dir", out, "--resolution", "32"], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    for text in (proc.stdout, proc.stderr, _log_of(out)):
        assert "possible name collision" not in text
        assert "module changed on disk" not in text


def test_a_missing_file_says_what_to_do(server, photos, tmp_path):
    missing = tmp_path / "nope.jpg"
    proc = run_cli([photos["apple"], missing, "--output-dir", tmp_path / "out", "--resolution", "32",
                    "--json", tmp_path / "r.json"], cli_env(server))
    assert proc.returncode == 1
    assert f"{missing} does not exist: check the path" in proc.stderr


def test_a_refused_connection_to_another_server_names_it_and_says_check_it_or_base_url(photos, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    proc = run_cli([photos["apple"], "--output-dir", tmp_path / "out", "--base-url", base], cli_env(None))
    assert proc.returncode == 2
    (line,) = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert base in line and "check that it runs" in line and "--base-url" in line, line
    assert "internet" not in line
