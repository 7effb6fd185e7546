"""A script calling the API gets the one sentence the panel shows, not the server's raw text."""

from __future__ import annotations

from typing import Any

import addon_harness
import pytest

from onemin3d_addon.core.errors import AuthError, ImageError, user_message

addon = addon_harness.addon
blender = addon_harness.blender
photo = addon_harness.photo


def test_a_rejected_key_raises_the_one_sentence(addon: Any, photo: Any) -> None:
    from onemin3d_addon import api

    addon.api_key = "sk-wrong-key-0000"
    with pytest.raises(AuthError) as caught:
        api.generate(photo, mode="plane")
    text = str(caught.value)
    assert text == user_message(caught.value)
    assert text.startswith("1min.ai rejected the API key") and "HTTP_EXCEPTION" not in text
    assert "API Key has been deleted" in caught.value.message  # the server's own words stay for the log


def test_a_missing_photo_says_what_to_do(addon: Any, tmp_path: Any) -> None:
    from onemin3d_addon import api

    with pytest.raises(ImageError, match="does not exist: check the path"):
        api.generate(tmp_path / "nope.jpg")
