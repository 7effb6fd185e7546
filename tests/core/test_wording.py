"""user_message in the UI's words or the command line's (errors.Wording), and a refused connection to a server that is not 1min.ai (bpy-free)."""

from __future__ import annotations

import socket

import pytest

from onemin3d_addon.cli.batch import cli_message, cli_wording
from onemin3d_addon.core import errors
from onemin3d_addon.core.client import OneMinClient
from onemin3d_addon.core.errors import (
    AuthError,
    ImportFailed,
    NetworkError,
    RateLimited,
    ResultError,
    ResultUnavailable,
    ServerError,
    StillRunning,
)


def _paid(err: errors.Onemin3DError, stage: str = "poll") -> errors.Onemin3DError:
    err.uuid, err.stage = "0f0f0f0f-0000-0000-0000-000000000000", stage
    return err


CASES = [
    AuthError("API Key has been deleted: [HTTP_EXCEPTION]", status=401),
    _paid(AuthError("API Key has been deleted", status=401)),
    _paid(RateLimited("slow down")),
    _paid(ServerError("bad gateway", status=502)),
    NetworkError("api.1min.ai refused the connection"),
    _paid(NetworkError("reset"), "download"),
    _paid(StillRunning("PROCESSING")),
    ResultUnavailable("The storage host refused the download", status=403),
    _paid(ResultUnavailable("The storage host refused the download", status=403), "download"),
    ResultError(""),
    ImportFailed(""),
]


@pytest.mark.parametrize("err", CASES, ids=lambda e: type(e).__name__)
def test_the_command_lines_words_name_its_options_not_the_add_ons_places(err: errors.Onemin3DError) -> None:
    ui = errors.user_message(err)
    cli = errors.user_message(err, cli_wording("dress.jpg"))
    assert cli != ui
    for place in (errors.PREFS_PATH, "Re-import", "from the history", "the add-on starts"):
        assert place not in cli, cli
    assert "--" in cli  # an option: --api-key, --resume, --proxy, …
    assert cli_message(err, "dress.jpg") == cli  # the converter says exactly that


def test_the_ui_words_are_the_default() -> None:
    err = _paid(NetworkError("reset"), "download")
    assert errors.user_message(err) == errors.user_message(err, errors.UI)
    assert errors.FETCH_LATER in errors.user_message(err)


def test_a_server_that_is_not_1min_ai_is_named_and_the_internet_is_not_blamed() -> None:
    err = NetworkError("127.0.0.1:9 refused the connection")
    err.server = "http://127.0.0.1:9"
    for text, base_url in ((errors.user_message(err), "Base URL"),
                           (errors.user_message(err, cli_wording()), "--base-url")):
        assert "http://127.0.0.1:9" in text and "check that it runs" in text and base_url in text
        assert "internet" not in text
        assert text.count(".") >= 1 and text.endswith(".")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_client_marks_a_refused_connection_to_another_server() -> None:
    base = f"http://127.0.0.1:{_closed_port()}"
    with OneMinClient("sk-test-key-1234", base) as client, pytest.raises(NetworkError) as caught:
        client.check_key()
    assert caught.value.server == base
    assert base in errors.user_message(caught.value)


def test_1min_ai_itself_is_not_named_as_another_server() -> None:
    err = NetworkError("api.1min.ai refused the connection")
    assert err.server is None
    assert "internet connection" in errors.user_message(err)


def test_advice_raised_deep_in_the_pipeline_is_worded_where_it_is_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from onemin3d_addon.core import images

    small = tmp_path / "thumb.png"
    Image.new("RGB", (100, 100), (200, 120, 40)).save(small)
    with pytest.raises(errors.ImageError) as caught:
        images.prepare(small)
    err = caught.value
    assert "enable 'Allow upscaling'" in str(err)  # logs and scripts: the add-on's words
    assert errors.user_message(err).endswith("choose a larger image or enable 'Allow upscaling'.")
    assert cli_message(err, "thumb.png").endswith("choose a larger image or pass --upscale.")

    made = errors.advised(ResultError, "1min.ai returned a file that is not a 3D model or an image (empty): "
                          "nothing was kept; ",
                          "download it again, free, {download_again}, and if the same comes back, {regenerate}.")
    assert "with Re-import in the history" in errors.user_message(made)
    text = cli_message(made, "my photo.jpg")
    assert "by running again with --resume" in text and "add --regenerate 'my photo.jpg' to generate it again" in text


def test_the_converter_rewrites_no_sentence() -> None:
    from pathlib import Path

    import onemin3d_addon.cli as cli

    for path in Path(cli.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "text.replace(" not in text and "PREFS_PATH" not in text, path.name
