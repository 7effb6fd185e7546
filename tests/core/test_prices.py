"""core.prices: one table of credits; a price not in it is unknown, never guessed."""

from __future__ import annotations

from onemin3d_addon.core import prices, protocol
from onemin3d_addon.core.options import api_model


def test_the_table_holds_the_known_prices_of_the_two_models_and_the_background_remover() -> None:
    assert prices.price("IMAGE_3D_GENERATOR", "stable-image") == 20_000
    assert prices.price("IMAGE_3D_GENERATOR", "Qubico/trellis") == 40_000
    assert prices.price("BACKGROUND_REMOVER", "stable-image") == 20_000
    assert prices.price("IMAGE_3D_GENERATOR", "Qubico/other") is None


def test_a_generation_costs_its_model_plus_the_background_removal() -> None:
    assert prices.cost(protocol.MODEL).text == "20,000 credits"
    assert prices.cost(api_model("trellis")).credits == 40_000
    assert prices.cost(protocol.TRELLIS_MODEL, remove_background=True).text == "60,000 credits"
    assert prices.cost(protocol.MODEL, True).credits == 40_000


def test_an_unknown_price_is_unknown_and_a_total_with_one_is_at_least_its_known_part() -> None:
    unknown = prices.cost("Qubico/other")
    assert unknown.credits is None and unknown.text == "unknown"
    partly = prices.cost("Qubico/other", remove_background=True)
    assert partly.credits is None and partly.text == "at least 20,000 credits"
    both = prices.total([prices.cost(protocol.MODEL), partly, unknown])
    assert both.text == "at least 40,000 credits" and both.unknown == ("IMAGE_3D_GENERATOR Qubico/other",)
    assert prices.total([]).text == prices.FREE.text == "0 credits"
    assert prices.credits_text(1) == "1 credit" and prices.credits_text(1_234_000) == "1,234,000 credits"
