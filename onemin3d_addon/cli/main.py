"""The converter's entry point (`blender -c onemin3d`, scripts/image_to_3d.py): set-up, Blender, exit codes."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from typing import Any

from . import arguments as arguments_module
from .arguments import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    IMAGE_SUFFIXES,
    UsageError,
    build_parser,
    script_argv,
)
from .batch import Batch
from .console import Console, Interrupt
from .inputs import Config, Defaults, Item, collect_inputs, configure
from .logs import _blender_output_to_log, remove_logging, setup_logging
from .report import _report_argument, _version, summary_line, write_report, write_usage_report

log = logging.getLogger("onemin3d.image_to_3d")

#: the add-on's package: onemin3d_addon from a checkout, bl_ext.<repository>.onemin3d installed
ADDON_PACKAGE = __package__.rsplit(".", 1)[0] if __package__ else "onemin3d_addon"

# --- Blender -------------------------------------------------------------------------------------


def start_blender(config: Config, *, enable: bool = True) -> Any:
    """Import bpy, register the add-on, start from an empty scene, then allow online access.

    Online access is switched on only after registration and the empty file are in place: the
    add-on's runtime resumes the in-Blender history's interrupted jobs when it registers and
    whenever a file is loaded, and those jobs are not this batch's business.
    """
    import bpy

    if offline_mode(bpy):
        raise UsageError("Blender was started with --offline-mode, so no request may be made: "
                         "drop --offline-mode to convert images.")
    online = bpy.context.preferences.system  # type: ignore[union-attr]
    # Started with --online-mode: the switch is Blender's (read-only), and already on.
    switch = not getattr(bpy.app, "online_access_override", False)
    if switch:
        online.use_online_access = False
    with _blender_output_to_log():
        if enable:
            _enable_addon(bpy)
        bpy.ops.wm.read_homefile(use_empty=True)
    # Running this command is the user's explicit request to go online, like blender --online-mode.
    if switch:
        online.use_online_access = True
    return bpy


def _hermetic_user_folder() -> None:
    """With the bpy wheel, keep Blender's user folders (config, scripts) in a temporary folder.

    The add-on is registered from this repository, so nothing is needed from the user's own
    Blender set-up, and nothing of this run should land in it. Must run before `import bpy`.
    """
    if "BLENDER_USER_RESOURCES" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="onemin3d-cli-user-")
    os.environ["BLENDER_USER_RESOURCES"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def _enable_addon(bpy: Any) -> None:
    """Enable this package as an add-on (scripts/image_to_3d.py: the repository's copy, or under
    `blender --python` the installed extension when the script was copied out of the repository)."""
    import addon_utils as addon_utils_typed

    addon_utils: Any = addon_utils_typed  # its stubs differ between Blender versions (check() -> None in 4.2's)

    def fail(exc: BaseException) -> None:
        raise exc

    name = ADDON_PACKAGE
    package = sys.modules.get(name)
    if package is not None and not hasattr(package, "__addon_enabled__") and package.__file__:
        # Imported as a library first (this converter lives in it): tell addon_utils it is the
        # add-on, disabled and unchanged on disk, or it warns of a "possible name collision" and
        # reloads it ("module changed on disk … reloading") in every run.
        setattr(package, "__addon_enabled__", False)  # noqa: B010
        setattr(package, "__time__", os.path.getmtime(package.__file__))  # noqa: B010  (attributes addon_utils reads)
    if not addon_utils.check(name)[1]:
        addon_utils.enable(name, default_set=True, handle_error=fail)


# --- main ----------------------------------------------------------------------------------------


def offline_mode(bpy: Any) -> bool:
    """True when Blender was started with --offline-mode (its override, and online access off)."""
    return bool(getattr(bpy.app, "online_access_override", False)) and not bpy.app.online_access


def main(argv: Sequence[str] | None = None, *, prog: str = "image_to_3d", hermetic: bool = False,
         enable: bool = True, defaults: Defaults | None = None) -> int:
    """Run the converter; returns the exit code (0, 1, 2 or 130, see the module docstring of
    scripts/image_to_3d.py and --help).

    `prog`: the name in messages and --help. `hermetic`: the bpy wheel, whose user folders are
    kept in a temporary folder. `enable`: enable the add-on first (not needed under
    `blender -c`, whose command exists only while it is enabled). `defaults`: the user's
    preferences (key, result folder, proxy, CA bundle), used where no argument is given and
    before the environment variables.
    """
    arguments_module.PROG = prog = prog.removesuffix(".py")
    parser = build_parser(arguments_module.PROG_USAGE.get(prog, prog))
    t_main = time.perf_counter()
    for stream in (sys.stdout, sys.stderr):  # a console that cannot show "×" or "…" gets "?"
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]
    arguments = script_argv(sys.argv) if argv is None else list(argv)
    try:
        args = arguments_module.parse(parser, arguments)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        code = int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        if code == EXIT_USAGE:
            write_usage_report(_report_argument(arguments), [], f"bad arguments: {parser.last_error or 'see --help'}")
        return code

    if args.dry_run:  # before anything is configured: no folder, log, Blender or key
        from . import dry_run

        return dry_run.run(args, prog, defaults)
    if hermetic:
        _hermetic_user_folder()  # before anything can import bpy (the add-on package may)
    from ..core import errors

    global log
    log = errors.get_logger("onemin3d.image_to_3d")
    try:
        config = configure(args, dict(os.environ), defaults)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        write_usage_report(args.report, collect_inputs(args.inputs, args.recursive), str(exc))
        return EXIT_USAGE
    errors.register_secret(config.api_key)
    handlers = setup_logging(config)
    errors.install_log_filter()
    log.info("onemin3d image_to_3d %s: %s", _version(), " ".join(_safe_argv(argv)))
    try:
        return _convert(config, prog, enable, t_main)
    finally:
        remove_logging(handlers)


def _convert(config: Config, prog: str, enable: bool, t_main: float) -> int:
    """The run, once configured and logging: exit 0, 1, 2 or 130."""
    from ..core import errors

    args = config.args
    items = collect_inputs(args.inputs, args.recursive)
    if not items:
        message = ("no images found in the inputs given (looked for "
                   f"{', '.join(IMAGE_SUFFIXES)}; add --recursive for sub-folders)")
        print(f"{prog}: error: {message}", file=sys.stderr)
        write_usage_report(args.report, items, message)
        return EXIT_USAGE

    interrupt = Interrupt()
    console = Console(len(items), quiet=args.quiet)
    batch: Batch | None = None
    try:
        try:
            bpy = start_blender(config, enable=enable)
        except UsageError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            write_usage_report(args.report, items, str(exc))
            return EXIT_USAGE
        interrupt.install()
        batch = Batch(config, items, bpy, console, interrupt)
        batch.startup = time.perf_counter() - t_main
        if not args.quiet:
            n = len(items)
            console.message(f"Converting {n} image{'s' if n != 1 else ''}, {min(n, args.jobs)} at a time; "
                            f"results are kept in {config.result_dir}")
        batch.run()
    except UsageError as exc:  # the key check: a rejected key or an unreachable server
        console.close()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        write_usage_report(args.report, items, str(exc))
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line on the console, the traceback in the log
        console.close()
        log.error("internal error:\n%s", traceback.format_exc())
        print(f"{prog}: internal error ({type(exc).__name__}: {errors.redact(str(exc))}); the details "
              f"are in {config.log_file}. Finished results are kept in {config.result_dir}.", file=sys.stderr)
        _write_report_safely(config, items, batch)
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.close()
        print(f"{prog}: stopped at once (second Ctrl-C); finished results are in "
              f"{config.result_dir}", file=sys.stderr)
        for item in items:
            if item.status in ("pending", "running"):
                item.status, item.error = "interrupted", "stopped by a second Ctrl-C"
        if batch is not None:
            batch.interrupted = True
        _write_report_safely(config, items, batch)
        return EXIT_INTERRUPTED
    finally:
        interrupt.restore()
        console.close()

    if batch.interrupted:
        for item in items:
            if item.status in ("pending", "running"):
                item.status = "interrupted"
                item.error = item.error or batch.interrupted_text(item)
    _write_report_safely(config, items, batch)
    _print_outputs(config, items, args.quiet)
    if not args.quiet or any(i.status == "failed" for i in items):
        print(summary_line(items, args.report))
    if batch.interrupted:
        return EXIT_INTERRUPTED
    failed = any(i.status in ("failed", "interrupted") for i in items) or batch.problems
    return EXIT_FAILED if failed else EXIT_OK


def _write_report_safely(config: Config, items: Sequence[Item], batch: Batch | None) -> None:
    try:
        write_report(config, items, batch, partial=False)
    except OSError as exc:
        print(f"{arguments_module.PROG}: error: could not write the report {config.args.report}: {exc}", file=sys.stderr)


def _print_outputs(config: Config, items: Sequence[Item], quiet: bool) -> None:
    if quiet:
        return
    args = config.args
    if args.output is not None and any(i.blend_file for i in items):
        print(f"scene:   {args.output}")
    elif args.output_dir is not None and any(i.blend_file for i in items):
        print(f"scenes:  {args.output_dir}")
    if config.scene_render is not None and config.scene_render.is_file():
        print(f"render:  {config.scene_render}")
    for folder in config.render_dirs:
        print(f"renders: {folder}")
    if args.report is not None:
        print(f"report:  {args.report}")
    print(f"results: {config.result_dir}")
    print(f"log:     {config.log_file}")


def _safe_argv(argv: Sequence[str] | None) -> list[str]:
    """The arguments for the log, with any --api-key value masked."""
    out, hide = [], False
    for a in (script_argv(sys.argv) if argv is None else argv):
        if hide:
            out.append("***")
            hide = False
        elif a == "--api-key":
            out.append(a)
            hide = True
        elif a.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(a)
    return out


