"""The converter's command line: its arguments, defaults (from core.options), choices and usage errors; bpy-free."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core import images, options

log = logging.getLogger("onemin3d.image_to_3d")

#: the name in messages ("image_to_3d: error: …"); main() sets it ("blender -c onemin3d")
PROG = "image_to_3d"
#: how --help names the command
PROG_USAGE = {"image_to_3d": "image_to_3d.py"}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: what a folder is searched for (the add-on's one list); anything but JPEG/PNG/WebP is converted
#: before the upload
IMAGE_SUFFIXES = images.IMAGE_SUFFIXES
EXPORT_FORMATS = ("glb", "fbx", "obj", "stl", "web", "usdz")
#: the file name ending of each export format (web: a GLB made small for web viewers)
EXPORT_SUFFIXES = {"web": "web.glb"}
#: --mode's values: the schema's modes and their other spellings, in lower case
MODES = tuple(v.lower() for v in (*options.choices("import_mode"), *options.MODE.aliases))
MAX_JOBS = 8
RESULT_DIR_NAME = "onemin3d-results"
#: after Ctrl-C, how long to wait for jobs to acknowledge the cancel before leaving them behind
CANCEL_GRACE = 10.0



def export_name(name: str, fmt: str) -> str:
    """The file name of the `fmt` export of the result called `name`."""
    return f"{name}.{EXPORT_SUFFIXES.get(fmt, fmt)}"


# --- command line --------------------------------------------------------------------------------


def script_argv(argv: Sequence[str], script: Path | None = None) -> list[str]:
    """The arguments meant for the script `script`: after `--` under Blender, else argv[1:]."""
    argv = list(argv)
    if argv and script is not None and _same_file(argv[0], script.resolve()):
        return argv[1:]  # python scripts/image_to_3d.py ARGS
    if "--" in argv:
        return argv[argv.index("--") + 1:]  # blender ... --python scripts/image_to_3d.py -- ARGS
    return []


def _same_file(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b
    except OSError:
        return False


EPILOG = """\
inputs:
  Files, folders (their JPEG, PNG, WebP, BMP, TIFF and TGA images; --recursive for sub-folders) and glob
  patterns ("photos/*.jpg", quoted so the shell leaves them alone). A missing path is reported
  as a failed input; it does not stop the batch.

where things go:
  --output OUT.blend     one scene with every result side by side, each in its own collection
  --output-dir DIR       one DIR/<image name>.blend per image
  --export FMT           also DIR/<image name>.FMT (next to the .blend) for each result; web:
                         <image name>.web.glb, small for <model-viewer> and three.js (reliefs
                         simplified, textures at most 2048 px); usdz: for AR Quick Look on iOS
  --render PATH          PATH ending in .png: one preview of the whole scene (--output only);
                         a folder: one preview per result, <folder>/<image name>.png
  --result-dir DIR       where every paid result is kept, with its history journal
                         (default: <output folder>/onemin3d-results)
  --json REPORT          a report: per input its status, files, error, stage and timings
  A log with the full details of every run is written to <result dir>/logs/.

the API key:
  --api-key KEY, else the ONEMIN_API_KEY environment variable. Prefer the variable: command-line
  arguments are visible to other users of the machine. The key is never printed or saved.

examples:
  %(prog)s photo.jpg --output photo.blend
  %(prog)s shots/ --recursive --output-dir out/ --export glb --jobs 4 --json out/report.json
  %(prog)s "shots/*.png" --mode displacement --strength 0.2 --solid --output relief.blend \\
      --render relief.png
  %(prog)s shots/ --output-dir out/ --resume      # after a failure or Ctrl-C: no credits spent twice
  %(prog)s shots/ --model trellis --remove-background --dry-run   # what it would cost; sends nothing

sync and async:
  Generations are asynchronous by default: each starts at once and is polled, and its id is kept in
  the history the moment 1min.ai answers, so after Ctrl-C, a crash or a fault, --resume fetches it
  without a new generation. --sync waits on one long request instead (Cloudflare may cut it after
  about 100 s); a sync generation cut off before its answer may have been charged, and --resume
  then refuses it with: "PHOTO: its generation may already have been sent and charged, but its
  answer never arrived, so --resume does not send it again; to generate it again on purpose, add
  --regenerate PHOTO to the command."

exit codes:
  0 every input converted   1 some inputs failed (the rest were converted and saved)
  2 usage or configuration error (nothing was sent; --json still writes the report, with the reason)
  130 interrupted by Ctrl-C
"""


class _Parser(argparse.ArgumentParser):
    """argparse, remembering its error message (for the --json report of an exit 2)."""

    last_error: str | None = None

    def error(self, message: str) -> Any:
        self.last_error = message
        super().error(message)


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ValueError(message)


def build_parser(prog: str = "image_to_3d.py") -> _Parser:
    p = _Parser(
        prog=prog,
        description="Turn photos into 3D with 1min.ai (image to 3D) and save them as Blender scenes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also look for images in sub-folders (and let ** in patterns match them)")

    out = p.add_argument_group("output")
    # one of them is required, except with --dry-run (parse() checks it)
    where = out.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", type=Path, metavar="OUT.blend",
                       help="one .blend with every result, side by side, each in its own collection")
    where.add_argument("-d", "--output-dir", type=Path, metavar="DIR", help="one .blend per image in DIR")
    out.add_argument("--export", choices=EXPORT_FORMATS, metavar="{" + ",".join(EXPORT_FORMATS) + "}",
                     help="also export each result in this format next to its .blend (web: a small GLB "
                          "for web pages, reliefs simplified to at most 50,000 triangles; usdz: for AR "
                          "Quick Look on iPhone and iPad)")
    out.add_argument("--render", action="append", default=[], metavar="PNG|DIR",
                     help="render a small Cycles preview: a .png path renders the whole scene, a folder "
                          "one picture per result (may be given twice)")
    out.add_argument("--pack", action="store_true", help="pack the images into the .blend files")
    out.add_argument("--result-dir", type=Path, metavar="DIR",
                     help=f"where paid results and their history are kept (default: <output folder>/{RESULT_DIR_NAME})")
    out.add_argument("--json", type=Path, metavar="REPORT", dest="report",
                     help="write a JSON report: one entry per input with status, files, error, stage, timings")

    imp = p.add_argument_group("import")
    imp.add_argument("--mode", type=str.lower, choices=MODES, default=str(options.MODE.default).lower(),
                     help="auto: a model is imported as a model, a depth map as a relief, a colour image as "
                          "a plane; plane: always a textured plane; displacement (or relief): always a relief "
                          "(default: %(default)s)")
    imp.add_argument("--resolution", type=_option("resolution"), default=_default("resolution"),
                     help=f"relief: vertices on the long side, {_range('resolution')} (default: %(default)s)")
    imp.add_argument("--strength", type=_option("strength"), default=_default("strength"),
                     help=f"relief: depth as a fraction of the width, {_range('strength')} (default: %(default)s)")
    imp.add_argument("--invert", action="store_true", default=_default("invert"),
                     help="relief: dark is near instead of white")
    imp.add_argument("--smooth", type=_option("smooth"), default=_default("smooth"),
                     help="relief: blur the depth map by this many pixels, against JPEG noise, "
                          f"{_range('smooth')} (default: %(default)s)")
    imp.add_argument("--solid", action="store_true", default=_default("solid"),
                     help="relief: close it into a watertight solid with a flat back (printable)")
    imp.add_argument("--tear", type=_option("tear"), default=_default("tear"), metavar="THRESHOLD",
                     help="relief: remove the faces that span a depth jump above THRESHOLD, a fraction of the "
                          f"relief depth, {_range('tear')}, so a subject does not drag a sheet down to the "
                          "background (default: %(default)s, off)")
    imp.add_argument("--no-cutout", dest="cutout", action="store_false", default=_default("cutout"),
                     help="keep the whole rectangle of a photo with transparency (by default a relief or plane "
                          "is cut to where its photo's alpha is at least 0.5)")
    gen = p.add_argument_group("generation (what is paid for; --dry-run says how much)")
    gen.add_argument("--model", type=_choice("model"), default=_default("model"), metavar="{stable-image,trellis}",
                     help="stable-image: Stable Image Core, a depth map raised into a relief; trellis: Trellis 3D "
                          "by Microsoft (sent as Qubico/trellis), a 3D model (default: %(default)s)")
    gen.add_argument("--remove-background", action="store_true", default=_default("remove_background"),
                     help="first cut the subject out of each photo with 1min.ai's background remover (a second, "
                          "paid request); the relief and plane are then cut to its outline")
    gen.add_argument("--dry-run", action="store_true",
                     help="print what the batch would cost, per photo and in total (with --resume: what is "
                          "already paid for costs 0), then exit 0; nothing is sent (not even an upload), "
                          "nothing is written, and no API key is needed")
    imp.add_argument("--size", type=_option("height"), default=None,
                     help="height of a plane or relief, longest side of a model, in metres (default: "
                          f"{_default('height'):g} for a plane or relief, {_default('target_size'):g} for a model)")

    api = p.add_argument_group("1min.ai")
    api.add_argument("--api-key", metavar="KEY", help="the 1min.ai API key (default: $ONEMIN_API_KEY)")
    api.add_argument("--base-url", metavar="URL",
                     help="the API's address (default: $ONEMIN_API_BASE_URL, else https://api.1min.ai)")
    api.add_argument("-j", "--jobs", type=_jobs, default=2,
                     help=f"parallel conversions, 1 to {MAX_JOBS}; requests stay under 1min.ai's limit of "
                          "180 a minute whatever the number (default: %(default)s)")
    how = api.add_mutually_exclusive_group()
    how.add_argument("--sync", dest="use_async", action="store_false",
                     help="wait for each generation on one long request, instead of the default: start it, "
                          "then poll. A sync generation cut off before its answer may be charged yet cannot "
                          "be fetched, and --resume does not send it again")
    how.add_argument("--async", dest="use_async", action="store_true",
                     help="start each generation, then poll for it: the default, kept for compatibility")
    p.set_defaults(use_async=True)
    api.add_argument("--poll-interval", type=_positive_float, default=1.0,
                     help="seconds before the first status check of a generation; later checks slow down "
                          "(x1.5 each, up to 10 s) to stay under the rate limit (default: %(default)s)")
    api.add_argument("--timeout", type=_positive_float, default=300.0,
                     help="seconds to wait for a generation to answer (default: %(default)s)")
    api.add_argument("--proxy", metavar="URL", help="an HTTP(S) proxy (the usual HTTPS_PROXY variables also work)")
    api.add_argument("--ca-bundle", type=Path, metavar="PEM", help="a CA bundle for TLS-inspecting proxies")
    api.add_argument("--upscale", action="store_true",
                     help="scale images smaller than 512×512 up to it, instead of refusing them")
    api.add_argument("--resume", action="store_true",
                     help="go on from what earlier runs left in the result folder or the report: results on "
                          "disk are imported from it, generations started earlier are fetched (free), and "
                          "nothing is paid twice; a damaged result is downloaded again")
    api.add_argument("--regenerate", action="append", default=[], metavar="PHOTO",
                     help="with --resume: generate PHOTO (a path or a file name) again, a new and paid "
                          "generation, instead of reusing or refusing what an earlier run left (may be given "
                          "more than once)")

    con = p.add_argument_group("console")
    talk = con.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    talk.add_argument("-v", "--verbose", action="store_true", help="also print the log on stderr")
    return p


def parse(parser: _Parser, argv: Sequence[str]) -> argparse.Namespace:
    """The arguments, or SystemExit as argparse exits (an output is required, except with --dry-run)."""
    args = parser.parse_args(argv)
    if args.output is None and args.output_dir is None and not args.dry_run:
        parser.error("one of the arguments -o/--output -d/--output-dir is required")
    return args


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _jobs(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_JOBS}, not {text}")
    return value


class UsageError(Exception):
    """A problem with the arguments or the set-up: exit 2 before anything is sent."""


class StepFailed(Exception):
    """A step after the import (an export, a render) failed; `message` is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def import_options(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's import options, named as `api.submit` (and `scene_build.import_result`)
    take them. --size sets both sizes; without it each keeps the schema's default."""
    chosen = {
        "resolution": args.resolution,
        "strength": args.strength,
        "invert": args.invert,
        "smooth": args.smooth,
        "solid": args.solid,
        "tear": args.tear,
        "cutout": args.cutout,
        "model": args.model,
        "remove_background": args.remove_background,
    }
    if args.size is not None:
        chosen["height"] = args.size        # a plane's or relief's height
        chosen["target_size"] = args.size   # a model's longest side
    return chosen


def _default(name: str) -> Any:
    return options.get(name).default


def _range(name: str) -> str:
    low, high = options.limits(name)
    if high is None:
        return f"at least {low:g}"
    return f"{low:g} to {high:g}"


def _choice(name: str) -> Callable[[str], str]:
    """An argparse type that reads one of the schema's choices (or an alias), in any case."""
    option = options.get(name)

    def parse(text: str) -> str:
        try:
            return str(option.check(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def _option(name: str) -> Callable[[str], Any]:
    """An argparse type that reads a number and checks it against the schema's limits."""
    option = options.get(name)

    def parse(text: str) -> Any:
        try:
            number = float(text)
            return option.check(int(number) if option.kind is int and number.is_integer() else number)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse
