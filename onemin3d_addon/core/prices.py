"""bpy-free, no third-party imports: what 1min.ai charges, in credits: the one price table, and what a generation will cost.

Prices change: they are kept here and only here (the panel and `--dry-run` read them through
`cost()` and `Price.text`). A (feature, model) pair that is not in `PRICES` has an unknown price,
shown as "unknown" and never guessed. A total with an unknown part is "at least" the sum of its
known parts (it will cost that much, and more by the unknown part); a total of nothing known is
"unknown".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from .protocol import BACKGROUND_MODEL, BACKGROUND_REMOVER, FEATURE_TYPE, MODEL, TRELLIS_MODEL

#: credits per call, by (feature, API model id): 1min.ai's live model list (API notes §5)
PRICES: Final[Mapping[tuple[str, str], int]] = MappingProxyType({
    (FEATURE_TYPE, MODEL): 20_000,            # IMAGE_3D_GENERATOR, Stable Image Core
    (FEATURE_TYPE, TRELLIS_MODEL): 40_000,    # IMAGE_3D_GENERATOR, Trellis 3D (Microsoft)
    (BACKGROUND_REMOVER, BACKGROUND_MODEL): 20_000,
    # the other stable-image features, for reference (the add-on sends none of them)
    ("IMAGE_UPSCALER", MODEL): 10_000,
    ("IMAGE_EXTENDER", MODEL): 40_000,
    ("IMAGE_OBJECT_REMOVER", MODEL): 30_000,
    ("SEARCH_AND_REPLACE", MODEL): 40_000,
})


def price(feature: str, model: str) -> int | None:
    """Credits for one call of `feature` with the API model id `model`; None when not known."""
    return PRICES.get((feature, model))


@dataclass(frozen=True)
class Price:
    """What something costs: `known` credits, plus the calls in `unknown` whose price is not known."""

    known: int = 0
    unknown: tuple[str, ...] = ()  # "FEATURE model" of each call whose price is not in PRICES

    @property
    def credits(self) -> int | None:
        """The exact number of credits, or None when a part's price is not known."""
        return None if self.unknown else self.known

    @property
    def text(self) -> str:
        """"40,000 credits", "0 credits", "at least 20,000 credits" or "unknown"."""
        if not self.unknown:
            return credits_text(self.known)
        return f"at least {credits_text(self.known)}" if self.known else "unknown"

    def __str__(self) -> str:
        return self.text


FREE: Final = Price()


def credits_text(credits: int) -> str:
    """1234000 → "1,234,000 credits" (one credit: "1 credit")."""
    return f"{credits:,} credit{'' if credits == 1 else 's'}"


def call(feature: str, model: str) -> Price:
    """The price of one call, known or not."""
    known = price(feature, model)
    return Price(known) if known is not None else Price(0, (f"{feature} {model}",))


def cost(model: str, remove_background: bool = False) -> Price:
    """What one Generate costs: IMAGE_3D_GENERATOR with the API model id `model`, after a
    BACKGROUND_REMOVER call when `remove_background`."""
    parts = [call(FEATURE_TYPE, model)]
    if remove_background:
        parts.append(call(BACKGROUND_REMOVER, BACKGROUND_MODEL))
    return total(parts)


def total(prices: Iterable[Price]) -> Price:
    """The sum of several prices (unknown parts stay listed, once each)."""
    known = 0
    unknown: list[str] = []
    for p in prices:
        known += p.known
        unknown.extend(u for u in p.unknown if u not in unknown)
    return Price(known, tuple(unknown))
