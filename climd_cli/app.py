"""The climd command line. Commands are listed in pipeline order."""
from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup

from stages import __version__
from stages.errors import EXIT_CODES

from . import common

EXIT_HELP = "\n\n".join(f"{code}: {text}" for code, text in EXIT_CODES.items())
GLOBAL_FLAGS = ("-q", "--quiet", "--no-progress", "--debug")   # the main options that take no value


def hoist_global_flags(args: list[str]) -> list[str]:
    """``climd report -q`` as ``climd -q report``: the main flags are accepted after the command too
    (up to a ``--``); none of them takes a value and no command defines one of them."""
    args = list(args)
    command = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if command is None:
        return args
    end = args.index("--") if "--" in args[command:] else len(args)
    moved = [a for a in args[command + 1:end] if a in GLOBAL_FLAGS]
    if not moved:
        return args
    rest = [a for a in args[command + 1:end] if a not in GLOBAL_FLAGS]
    return args[:command] + moved + [args[command]] + rest + args[end:]


class _Group(TyperGroup):
    def parse_args(self, ctx, args):
        return super().parse_args(ctx, hoist_global_flags(args))


app = typer.Typer(
    name="climd",
    help="CLIMD: curriculum learning for imbalanced multimodal diagnosis, as pipeline stages.\n\n"
         "encode -> score -> fit-dist -> schedule -> train -> evaluate -> report. Each stage reads and "
         "writes cached artifacts under <cache-dir>/<run>/ and is reused when nothing changed.",
    epilog=f"Quick start: climd encode --run demo && climd score --run demo && climd fit-dist --run demo "
           f"&& climd schedule --run demo && climd train --run demo && climd evaluate --run demo\n\n"
           f"Exit codes:\n\n{EXIT_HELP}",
    no_args_is_help=True,
    cls=_Group,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"climd {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr; no progress bars.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars (they are off anyway when stderr is not a terminal).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logging.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
):
    from stages.runtime import progress
    from stages.runtime import threads

    threads.configure()            # before any library starts a thread pool
    common.setup_logging(quiet, debug)
    if quiet or no_progress:
        progress.set_enabled(False)


def _epilog(text: str) -> str:
    """Epilogs are plain text with YAML and option examples (``[wce, focal]``, ``[test]``): escaped so
    that Rich shows them instead of reading them as markup tags."""
    from rich.markup import escape

    return escape(text)


def _register():
    from . import cmd_compare, cmd_core, cmd_encode, cmd_inspect, cmd_manifest, cmd_predict, cmd_report, cmd_status, cmd_sweep, cmd_train

    app.command("manifest", epilog=_epilog(cmd_manifest.EPILOG))(cmd_manifest.manifest)
    app.command("encode", epilog=_epilog(cmd_encode.EPILOG))(cmd_encode.encode)
    app.command("score", epilog=_epilog(cmd_core.SCORE_EPILOG))(cmd_core.score)
    app.command("fit-dist", epilog=_epilog(cmd_core.FIT_EPILOG))(cmd_core.fit_dist)
    app.command("schedule", epilog=_epilog(cmd_core.SCHEDULE_EPILOG))(cmd_core.schedule)
    app.command("train", epilog=_epilog(cmd_train.TRAIN_EPILOG))(cmd_train.train)
    app.command("evaluate", epilog=_epilog(cmd_train.EVAL_EPILOG))(cmd_train.evaluate)
    app.command("predict", epilog=_epilog(cmd_predict.EPILOG))(cmd_predict.predict)
    app.command("report", epilog=_epilog(cmd_report.REPORT_EPILOG))(cmd_report.report)
    app.command("select", epilog=_epilog(cmd_report.SELECT_EPILOG))(cmd_report.select)
    app.command("inspect", epilog=_epilog(cmd_inspect.EPILOG))(cmd_inspect.inspect)
    app.command("sweep", epilog=_epilog(cmd_sweep.EPILOG))(cmd_sweep.sweep)
    app.command("status", epilog=_epilog(cmd_status.EPILOG))(cmd_status.status)
    app.command("compare", epilog=_epilog(cmd_compare.EPILOG))(cmd_compare.compare)
    from . import cmd_pool; app.command("pool", epilog=_epilog(cmd_pool.EPILOG))(cmd_pool.pool)  # noqa: E702


_register()


def main():
    """The console script. After the command, the process ends without the interpreter's teardown,
    which costs ~0.4 s once torch is loaded: outputs are flushed and every file is closed by then."""
    import logging
    import os
    import sys

    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    dump = os.environ.get("CLIMD_DEBUG_MODULES")   # test hook: which modules a command imported
    if dump:
        with open(dump, "w") as fh:
            fh.write("\n".join(sorted(sys.modules)) + "\n")
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe (climd ... | head)
            pass
    if "torch" in sys.modules:
        os._exit(code)
    sys.exit(code)
