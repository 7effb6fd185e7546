"""bpy-free: --dry-run: what the batch would cost, per photo and in total; sends nothing, writes nothing, needs no key.

It reads the inputs (and with --resume the result folder's history and the --json report of an
earlier run, through the same `Previous.checkpoint_for` the batch resumes with), prices each
photo with core.prices, prints, and exits 0. It neither starts Blender's data nor the add-on's
runtime, makes no request, and creates no file or folder: not the result folder, its log, the
.blend, nor the --json report (which a real run writes; with --resume it is only read).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from ..core import options, prices
from .arguments import EXIT_OK, EXIT_USAGE, IMAGE_SUFFIXES
from .inputs import Defaults, Item, _sha256, collect_inputs, result_folder
from .previous import load_previous, regenerated

#: what a photo whose earlier generation is reused costs, and why (by Item.resumed_from)
_REUSED = {
    "result": "its result is on disk from an earlier run: imported from there",
    "generation": "already paid for: its generation is fetched again, free",
    "interrupted generation": ("its earlier generation may already be charged and never answered: --resume refuses "
                               "it, nothing is sent (add --regenerate PHOTO to pay for a new one)"),
}


def price_of(item: Item, checkpoint: Any, model: str, remove_background: bool) -> prices.Price:
    """What converting `item` pays, going on from `checkpoint` (None: from the photo)."""
    if checkpoint is None:
        return prices.cost(model, remove_background)
    if checkpoint.result_file is not None or checkpoint.uuid or checkpoint.sent:
        return prices.FREE  # on disk, fetched free, or refused rather than paid twice
    generation = item.generation or {}
    model = options.api_model(generation.get("model", model))
    removal = bool(generation.get("remove_background", remove_background))
    if getattr(checkpoint, "bg_file", None) is not None or getattr(checkpoint, "bg_uuid", None):
        removal = False  # the cut-out is paid for already (journalled): only the 3D step is left
    return prices.cost(model, removal)


def run(args: argparse.Namespace, prog: str, defaults: Defaults | None = None,
        out: TextIO | None = None) -> int:
    """Print the cost of the batch `args` describes; EXIT_OK, or EXIT_USAGE when there is nothing to price."""
    out = out or sys.stdout
    items = collect_inputs(args.inputs, args.recursive)
    if not items:
        print(f"{prog}: error: no images found in the inputs given (looked for {', '.join(IMAGE_SUFFIXES)}; "
              "add --recursive for sub-folders)", file=sys.stderr)
        return EXIT_USAGE
    model = options.api_model(args.model)
    from ..core import pipeline

    previous = None
    if args.resume:
        folder = result_folder(args, defaults)
        if folder is None:
            print(f"{prog}: error: --dry-run --resume reads what earlier runs left in the result folder: "
                  "give the run's --output, --output-dir or --result-dir.", file=sys.stderr)
            return EXIT_USAGE
        from ..core.history import History

        previous = load_previous(_resolved(args.report), History(folder))
    label = next(c.label for c in options.get("model").choices if c.value == args.model)
    print(f"Dry run: nothing is sent and nothing is written. Model: {label} ({model}); background removal: "
          f"{'on' if args.remove_background else 'off'}.", file=out)
    width = max(len(item.label) for item in items)
    priced: list[prices.Price] = []
    for item in items:
        price, note = _price(item, args, previous, model, pipeline)
        if price is not None:
            priced.append(price)
        shown = price.text if price is not None else "-"
        print(f"  {item.label:<{width}}  {shown}{f'  ({note})' if note else ''}", file=out)
    paid = sum(1 for p in priced if p.known or p.unknown)
    print(f"Total: {prices.total(priced).text} for {paid} of {len(items)} photo{'s' if len(items) != 1 else ''} "
          "(prices change; the table is in core/prices.py).", file=out)
    return EXIT_OK


def _price(item: Item, args: argparse.Namespace, previous: Any, model: str,
           pipeline: Any) -> tuple[prices.Price | None, str]:
    if item.path is None:
        return None, "no such file: it would fail, and cost nothing"
    if not item.path.is_file():
        return None, "not a file: it would fail, and cost nothing"
    if previous is None:
        return prices.cost(model, args.remove_background), ""
    try:
        item.sha256 = _sha256(item.path)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc}): it would fail, and cost nothing"
    if regenerated(item, args.regenerate):
        return prices.cost(model, args.remove_background), "--regenerate: a new generation, on purpose"
    checkpoint = previous.checkpoint_for(item, pipeline)
    price = price_of(item, checkpoint, model, args.remove_background)
    note = _REUSED.get(item.resumed_from or "", "") if checkpoint is not None and price is prices.FREE else ""
    if checkpoint is not None and price is not prices.FREE:
        note = "goes on from what an earlier run paid for"
    return price, note.replace("PHOTO", item.label)


def _resolved(path: Path | None) -> Path | None:
    return Path(path).expanduser().resolve() if path is not None else None
