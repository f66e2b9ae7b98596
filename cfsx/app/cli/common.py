"""What every command shares: the Typer app and its global options, the consoles (answers on stdout, progress and
logs on stderr), one-line errors with the exit codes of README.md, progress bars."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cfsx.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_RESUMABLE,
    EXIT_SIGINT,
    EXIT_USAGE,
    AdvisedError,
    CfsxError,
    Terminated,
)

app = typer.Typer(
    name="cfsx",
    help="Interpret X-ray diffuse scattering with CNNs trained on Monte Carlo simulations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


# Without a terminal (logs of batch jobs, pipes) lines are not wrapped at 80 columns.
console = Console(stderr=True, soft_wrap=not sys.stderr.isatty(), emoji=False)


SetOverrides = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config value: section.key=value (repeatable).")
]


state = {"debug": False}


DEFAULT_WORKERS = "(default: the CPUs this process may use: its affinity, SLURM_CPUS_PER_TASK)."


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the record as one JSON object on stdout (the human text goes to stderr).")
]

# Config keys that have a flag of their own: errors that advise a setting name the flag on the command line.
FLAGS = {
    "geometry.centre": "--centre",
    "geometry.zones": "--zones",
    "geometry.lattice": "--lattice",
    "geometry.origin": "--origin",
    "geometry.pixels_per_rlu": "--pixels-per-rlu",
    "geometry.rotation": "--rotation",
    "mask.file": "--mask",
    "spec.frames": "--frames",
    "spec.sum": "--sum-frames",
    "spec.plane": "--plane",
}


def print_json(record: object) -> None:
    """One JSON object on stdout: dataclasses, NumPy values and paths as plain JSON."""
    import dataclasses
    import json

    import numpy as np

    def plain(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {item.name: plain(getattr(value, item.name)) for item in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, Path):
            return str(value)
        return value

    sys.stdout.write(json.dumps(plain(record)) + "\n")


def renamed(old: str, old_value, new: str, new_value):
    """The value of an option that was renamed: the new spelling, or the old one with a one-line notice
    (old spellings keep working for one release)."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise fail(f"{old} is the old spelling of {new}: give one of them", EXIT_USAGE)
    console.print(
        f"note: {old} is deprecated and will be removed in the next release; use {new}", highlight=False, markup=False
    )
    return old_value


def examples(commands: list[str]) -> str:
    """An Examples section for a command's help (one command a line)."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {command}" for command in commands)


def result_console(json_: bool) -> Console:
    """Where a command's human-readable result goes: stdout, or stderr when stdout carries --json's record."""
    stream = sys.stderr if json_ else sys.stdout
    return Console(file=stream, soft_wrap=not stream.isatty(), quiet=console.quiet, emoji=False)


def _version(value: bool) -> None:
    if value:
        from cfsx import __version__

        print(f"cfsx {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log what is done: -v steps, -vv details (stderr).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only (and --json's record).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Interpret X-ray diffuse scattering with CNNs trained on Monte Carlo simulations."""
    from cfsx.io.cpus import limit_blas_threads

    if verbose and quiet:
        raise fail("-v and -q contradict each other: give one of them", EXIT_USAGE)
    state["debug"] = debug
    console.quiet = quiet
    _configure_logging(logging.WARNING if quiet or not verbose else logging.INFO if verbose == 1 else logging.DEBUG)
    signal.signal(signal.SIGTERM, _terminate)
    limit_blas_threads()


def _configure_logging(level: int) -> None:
    """cfsx's loggers (``cfsx.*``) to stderr, one plain line each, at ``level``."""
    logger = logging.getLogger("cfsx")
    logger.setLevel(level)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever sys.stderr is when they are written (a notebook or a test runner may replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler sets it at construction: sys.stderr is always used
        pass


def _terminate(signum, frame) -> None:
    """SIGTERM (a batch system's time limit, kill): stop like Ctrl-C, keeping finished work."""
    raise Terminated()


def fail(message: str, code: int) -> typer.Exit:

    errors = Console(stderr=True, soft_wrap=True, emoji=False)  # also under -q
    errors.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn every error into one red line on stderr and the exit code of the table in README."""
    try:
        yield
    except typer.Exit:
        raise
    except Terminated:
        console.print(
            "[yellow]terminated (SIGTERM)[/yellow]: finished work is kept; the same command with --resume continues"
        )
        raise typer.Exit(EXIT_RESUMABLE) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(EXIT_SIGINT) from None
    except Exception as error:
        if state["debug"]:
            raise
        raise failure(error) from None


def failure(error: Exception) -> typer.Exit:
    """The line and exit code for an error: cfsx's own, a file system's, or a bug (exit 1)."""
    if isinstance(error, AdvisedError):
        return fail(error.text(FLAGS), error.exit_code)
    if isinstance(error, CfsxError):
        return fail(str(error), error.exit_code)
    if isinstance(error, OSError):
        from cfsx.io.outputs import output_failure

        failure = output_failure(error, error.filename or "the output")
        if failure is not None:
            return fail(str(failure), failure.exit_code)
        where = f": {error.filename}" if error.filename else ""
        return fail(f"{error.strerror or error}{where}", EXIT_BAD_INPUT if error.filename else EXIT_INTERNAL)
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return fail(
        f"internal error ({type(error).__name__}{': ' + message[:200] if message else ''}); "
        "cfsx --debug shows the traceback: please report it",
        EXIT_INTERNAL,
    )


def progress_bar():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class Bar(Progress):
        """A progress display that vanishes on an error, so the error stays the one line printed."""

        def __exit__(self, exc_type, exc, traceback) -> None:
            if exc_type is not None:
                for task_id in list(self.task_ids):
                    self.remove_task(task_id)
                self.live.transient = True  # no empty last frame above the error line
            super().__exit__(exc_type, exc, traceback)

    return Bar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,  # batch logs get the summary lines, not a bar's last frame
    )
