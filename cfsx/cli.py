"""The ``cfsx`` command line: parse, call one library function, print."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_NOT_EXPLAINED,
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
console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())
SetOverrides = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config value: section.key=value (repeatable).")
]
state = {"debug": False}
DEFAULT_WORKERS = "(default: the CPUs this process may use: its affinity, SLURM_CPUS_PER_TASK)."


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the record as one JSON object on stdout (the human text goes to stderr).")
]


def _print_json(record: object) -> None:
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


def _renamed(old: str, old_value, new: str, new_value):
    """The value of an option that was renamed: the new spelling, or the old one with a one-line notice
    (old spellings keep working for one release)."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise _fail(f"{old} is the old spelling of {new}: give one of them", EXIT_USAGE)
    console.print(f"note: {old} is deprecated and will be removed in the next release; use {new}", highlight=False)
    return old_value


def _examples(commands: list[str]) -> str:
    """An Examples section for a command's help (one command a line)."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {command}" for command in commands)


def _result_console(json_: bool) -> Console:
    """Where a command's human-readable result goes: stdout, or stderr when stdout carries --json's record."""
    stream = sys.stderr if json_ else sys.stdout
    return Console(file=stream, soft_wrap=not stream.isatty(), quiet=console.quiet)


def _version(value: bool) -> None:
    if value:
        from . import __version__

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
    from .cpus import limit_blas_threads

    if verbose and quiet:
        raise _fail("-v and -q contradict each other: give one of them", EXIT_USAGE)
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


def _fail(message: str, code: int) -> typer.Exit:
    from rich.markup import escape

    errors = Console(stderr=True, soft_wrap=True)  # also under -q
    errors.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
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
        raise _failure(error) from None


def _failure(error: Exception) -> typer.Exit:
    """The line and exit code for an error: cfsx's own, a file system's, or a bug (exit 1)."""
    if isinstance(error, AdvisedError):
        return _fail(error.text(FLAGS), error.exit_code)
    if isinstance(error, CfsxError):
        return _fail(str(error), error.exit_code)
    if isinstance(error, OSError):
        from .outputs import output_failure

        failure = output_failure(error, error.filename or "the output")
        if failure is not None:
            return _fail(str(failure), failure.exit_code)
        where = f": {error.filename}" if error.filename else ""
        return _fail(f"{error.strerror or error}{where}", EXIT_BAD_INPUT if error.filename else EXIT_INTERNAL)
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return _fail(
        f"internal error ({type(error).__name__}{': ' + message[:200] if message else ''}); "
        "cfsx --debug shows the traceback: please report it",
        EXIT_INTERNAL,
    )


def _progress_bar():
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


@app.command(
    epilog=_examples(
        [
            "cfsx simulate cfs4 -o cfs4.h5",
            "cfsx simulate cfs4 -o big.h5 --samples 100000 --seed 7 --resume",
            "cfsx simulate my.yaml -o part.h5 --shard 0/4 --set run.samples=20000",
        ]
    )
)
def simulate(
    config: Annotated[
        str, typer.Argument(help="YAML config file, or a built-in name: demo, cfs2, cfs3, cfs4, cfs4-hires.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset file to write (.h5).")],
    samples: Annotated[int | None, typer.Option(help="Number of samples (run.samples).")] = None,
    seed: Annotated[int | None, typer.Option(help="Master seed (run.seed).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes " + DEFAULT_WORKERS),
    ] = None,
    set_: SetOverrides = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoints.")] = False,
    shard: Annotated[str | None, typer.Option(help="Write shard i of N (i/N, 0-based) of the run.")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Run on a Dask cluster: the scheduler's address (tcp://host:8786).")
    ] = None,
    scheduler_file: Annotated[
        Path | None, typer.Option(help="Run on a Dask cluster: its scheduler file (dask-scheduler --scheduler-file).")
    ] = None,
    scheduler_timeout: Annotated[float, typer.Option(help="Seconds to wait for the Dask scheduler.")] = 30.0,
    json_: JsonFlag = False,
) -> None:
    """Simulate image/encoding pairs with the Monte Carlo engine and write a dataset."""
    with _reported_errors():
        from . import simulation
        from .cluster import Scheduler
        from .config import load_config
        from .errors import ConfigError

        resolved = load_config(config, set_ or (), **{"run.samples": samples, "run.seed": seed})
        shard_spec = simulation.Shard.parse(shard) if shard else None
        simulation.check_run_options(output, workers)
        cluster = None
        if scheduler is not None or scheduler_file is not None:
            if workers is not None:
                raise ConfigError("--workers is for the local process pool; a Dask cluster has its own workers")
            cluster = Scheduler(address=scheduler, scheduler_file=scheduler_file, timeout=scheduler_timeout)
        with _progress_bar() as bar:
            task = bar.add_task("simulate", total=None, rate="")
            start_time: list[float] = []

            def progress(done: int, total: int) -> None:
                if not start_time:
                    start_time.extend([time.perf_counter(), done])
                elapsed = time.perf_counter() - start_time[0]
                rate = (done - start_time[1]) / elapsed if elapsed > 0 else 0.0
                bar.update(task, completed=done, total=total, rate=f"{rate:.1f} samples/s")

            report = simulation.simulate(
                resolved, output, workers=workers, resume=resume, shard=shard_spec, progress=progress, scheduler=cluster
            )
        console.print(report.summary(), highlight=False)
        if json_:
            _print_json(report)


@app.command(
    epilog=_examples(
        ["cfsx corrupt cfs4.h5 -o cfs4-corrupted.h5", "cfsx train cfs4.h5 cfs4-corrupted.h5 -o cfs4.keras"]
    )
)
def corrupt(
    data: Annotated[Path, typer.Argument(help="Dataset (.h5) of cfsx simulate.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset of corrected copies to write (.h5).")],
    seed: Annotated[int, typer.Option(help="Seed of the corruptions (image i draws from (seed, i)).")] = 0,
    workers: Annotated[int | None, typer.Option(help="Processes " + DEFAULT_WORKERS)] = None,
) -> None:
    """Copy a dataset with every image corrupted like a detector image (falloff, Bragg peaks, counting noise,
    gaps, beamstop; each with probability 1/2) and then cleaned by cfsx correct: training data for images that
    reach the CNN through correct."""
    with _reported_errors():
        from .corruption import corrupted_copy
        from .outputs import claim_outputs
        from .simulation import worker_count

        with claim_outputs(files=[output], inputs=[data]), _progress_bar() as bar:
            task = bar.add_task("corrupt", total=None, rate="")
            started = time.perf_counter()
            count = corrupted_copy(
                data,
                output,
                seed,
                worker_count(workers),
                lambda done, total: bar.update(task, completed=done, total=total),
            )
        console.print(
            f"wrote {count} corrupted and corrected copies to {output} in {time.perf_counter() - started:.0f} s"
        )


@app.command(epilog=_examples(["cfsx merge part-*.h5 -o data.h5"]))
def merge(
    shards: Annotated[list[Path], typer.Argument(help="Shard files written with --shard i/N.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Merged dataset to write.")],
) -> None:
    """Join the shards of one run into the dataset a single run writes."""
    with _reported_errors():
        from .dataset import merge_shards

        total = merge_shards(list(shards), output)
        console.print(f"merged {len(shards)} shards, {total} samples, into {output}")


@app.command(epilog=_examples(["cfsx models", "cfsx models --json"]))
def models(json_: JsonFlag = False) -> None:
    """List the built-in models: what they were trained on and how they score on the generalisation benchmark."""
    with _reported_errors():
        from .builtin import DEFAULT_MODEL, builtin_models

        found = builtin_models()
        if json_:
            _print_json([{**vars(model), "path": model.path, "installed": model.path.is_file()} for model in found])
        if not found:
            console.print("no built-in models are installed (make models builds them)")
            return
        table = Table(title="built-in models (docs/models.md: their model card)")
        for column in ("name", "CFS", "architecture", "trained on", "benchmark", "sha256"):
            table.add_column(column)
        for model in found:
            figures = ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                                for key, value in model.benchmark.items())  # fmt: skip
            name = model.name + (" (default)" if model.name == DEFAULT_MODEL else "")
            name += "" if model.path.is_file() else " [not installed]"
            table.add_row(name, str(model.cfs), model.architecture, model.trained_on, figures or "-", model.sha256[:12])
        _result_console(json_).print(table)


@app.command(epilog=_examples(["cfsx info cfs4.h5", "cfsx info cfs4.keras", "cfsx info general-cfs4"]))
def info(
    path: Annotated[
        Path, typer.Argument(help="A cfsx dataset (.h5), model (.keras) or built-in model's name (cfsx models).")
    ],
    json_: JsonFlag = False,
) -> None:
    """Describe a dataset (size, settings, label statistics, how well the targets were reached) or a model
    (encoding, grid, training data and run, hold-out metrics)."""
    with _reported_errors():
        from .builtin import builtin_model
        from .dataset import describe

        out = _result_console(json_)
        if path.suffix.lower() == ".keras" or (not path.exists() and builtin_model(str(path)) is not None):
            metadata = _describe_model(path, out)
            if json_:
                _print_json({key: value for key, value in metadata.items() if key != "split"})
            return
        details = describe(path)
        if json_:
            _print_json(details)
        out.print(details.summary(), highlight=False, markup=False)


def _describe_model(path: Path, out: Console) -> dict:
    """cfsx info on a .keras model: its metadata, read without loading the weights; returns the metadata."""
    from .model_card import read_model_card

    card = read_model_card(path)
    out.print(card.summary(), highlight=False, markup=False)
    return card.metadata


config_app = typer.Typer(help="Show the built-in configs and what a config resolves to.", no_args_is_help=True)
app.add_typer(config_app, name="config")
CONFIG_KINDS = ("simulate", "train", "correct", "interpret")


def _config_root(kind: str):
    from .config import CorrectionConfig, InterpretationConfig, SimulationConfig, TrainingConfig

    roots = (SimulationConfig, TrainingConfig, CorrectionConfig, InterpretationConfig)
    return dict(zip(CONFIG_KINDS, roots, strict=True))[kind]


@config_app.command(
    "show",
    epilog=_examples(
        ["cfsx config show cfs4", "cfsx config show cfs4 --set lattice.size=64", "cfsx config show my.yaml"]
    ),
)
def config_show(
    name: Annotated[str, typer.Argument(help="A built-in config's name or a YAML file.")],
    set_: SetOverrides = None,
    kind: Annotated[
        str | None, typer.Option(help="simulate, train, correct or interpret (default: from the file's sections).")
    ] = None,
) -> None:
    """Print a config as the commands resolve it (defaults filled in, --set applied), with its comments."""
    with _reported_errors():
        import yaml

        from .config import annotated_yaml, load_config, resolve_config_path
        from .errors import ConfigError

        path = resolve_config_path(name)
        text = path.read_text()
        if kind is not None and kind not in CONFIG_KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(CONFIG_KINDS)}, got {kind!r}")
        sections = set(yaml.safe_load(text) or {}) if kind is None else set()
        kinds = [kind] if kind else [k for k in CONFIG_KINDS if sections <= set(_section_names(_config_root(k)))]
        if not kinds:
            raise ConfigError(f"{path}: its sections {sorted(sections)} are not those of any cfsx config")
        resolved = load_config(path, set_ or (), root=_config_root(kinds[0]))
        changed = [text.split("=", 1)[0].strip() for text in set_ or ()]
        sys.stdout.write(f"# {path} ({kinds[0]} config)\n" + annotated_yaml(resolved, text, changed))


def _section_names(root) -> list[str]:
    import dataclasses

    return [field.name for field in dataclasses.fields(root)]


def _training_config(config: str, set_: list[str] | None, **flags):
    from .config import TrainingConfig, load_config

    return load_config(config, set_ or (), root=TrainingConfig, **flags)


@app.command(
    epilog=_examples(
        [
            "cfsx train cfs4.h5 -o cfs4.keras",
            "cfsx train cfs4.h5 -o cfs4.keras --resume",
            "cfsx train cfs4.h5 store.h5 --init cfs4.keras -o tuned.keras",
        ]
    )
)
def train(
    data: Annotated[
        list[Path], typer.Argument(help="Training datasets (.h5) of cfsx simulate, or knowledge stores of interpret.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write (.keras).")],
    init: Annotated[
        Path | None, typer.Option(help="Start from this model's weights and architecture (fine-tuning).")
    ] = None,
    config: Annotated[str, typer.Option(help="Training config: a YAML file or a built-in name.")] = "train",
    arch: Annotated[
        str | None, typer.Option("--arch", help="small, wide, large or hybrid (model.architecture).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (fit.epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (fit.batch_size).")] = None,
    val_split: Annotated[float | None, typer.Option(help="Validation fraction (fit.validation_split).")] = None,
    test_split: Annotated[float | None, typer.Option(help="Hold-out fraction (fit.test_split).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of split, shuffling and initialisation (fit.seed).")] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(help="Adam learning rate (fit.learning_rate; with --init fit.fine_tune_learning_rate)."),
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Stop after this many epochs without a better val_loss; 0 = off.")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="tf.distribute strategy: none, mirrored or multiworker (fit.strategy).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue a killed or interrupted run from its last epoch (MODEL.parts/).")
    ] = False,
    set_: SetOverrides = None,
    json_: JsonFlag = False,
) -> None:
    """Train a CNN that maps images to encodings; keeps the weights of the best validation epoch."""
    with _reported_errors():
        from .training import train as run_training

        resolved = _training_config(
            config,
            set_,
            **{
                "model.architecture": arch,
                "fit.epochs": epochs,
                "fit.batch_size": batch_size,
                "fit.validation_split": val_split,
                "fit.test_split": test_split,
                "fit.seed": seed,
                "fit.fine_tune_learning_rate" if init else "fit.learning_rate": learning_rate,
                "fit.patience": patience,
                "fit.strategy": strategy,
            },
        )
        with _progress_bar() as bar:
            task = bar.add_task("train", total=resolved.fit.epochs, rate="")

            def on_epoch(report) -> None:
                logs = report.logs
                bar.update(
                    task,
                    completed=report.epoch,
                    rate=f"loss {logs['loss']:.2e} val_loss {logs['val_loss']:.2e} "
                    f"val_r2 {logs.get('val_r2', float('nan')):.3f} {report.images_per_second:.0f} images/s",
                )
                if report.best:
                    bar.console.print(
                        f"epoch {report.epoch}: val_loss {logs['val_loss']:.3e} (best so far)", highlight=False
                    )

            result = run_training(list(data), output, resolved, on_epoch=on_epoch, init=init, resume=resume)
        console.print(result.summary(), highlight=False)
        if json_:
            _print_json(result.record())
        if result.interrupted:
            raise typer.Exit(EXIT_RESUMABLE if result.terminated else EXIT_SIGINT)


@app.command(
    epilog=_examples(
        ["cfsx evaluate cfs4.keras cfs4.h5 -o report/", "cfsx evaluate cfs4.keras cfs4.h5 -o corrupted/ --corrupt 3"]
    )
)
def evaluate(
    model: Annotated[Path, typer.Argument(help="Trained model (.keras) written by cfsx train.")],
    data: Annotated[Path, typer.Argument(help="Dataset (.h5): the training file (its hold-out is used) or another.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report directory to write.")],
    config: Annotated[str, typer.Option(help="Training/evaluation config: a YAML file or a built-in name.")] = "train",
    compare: Annotated[
        list[Path] | None,
        typer.Option(help="Another model (for example of a smaller CFS) for the decoded-image test (repeatable)."),
    ] = None,
    resimulated: Annotated[
        int | None, typer.Option(help="Encodings re-simulated for the image tests (evaluation.resimulated).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Processes for the re-simulations " + DEFAULT_WORKERS),
    ] = None,
    corrupt: Annotated[
        float | None,
        typer.Option(help="Also score on corrupted, then corrected detector images with this many counts per pixel."),
    ] = None,
    set_: SetOverrides = None,
    json_: JsonFlag = False,
) -> None:
    """Score a model: encoding metrics, classical inversion, intrinsic error and decoded images."""
    with _reported_errors():
        from .evaluation import evaluate as run_evaluation
        from .simulation import worker_count

        resolved = _training_config(
            config, set_, **{"evaluation.resimulated": resimulated, "evaluation.corrupted_flux": corrupt}
        )
        processes = worker_count(workers)
        report = run_evaluation(
            model,
            data,
            output,
            resolved,
            compare=list(compare or ()),
            workers=processes,
            progress=lambda message: console.print(message, highlight=False),
        )
        if json_:
            _print_json(report)
        console.print(report.summary(), highlight=False)


def _pair(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    from .errors import ConfigError

    try:
        first, second = (float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be two numbers: ROW,COLUMN (got {text!r})") from None
    return [first, second]


def _correction_config(config: str, set_: list[str] | None, calibration: dict[str, Any], mask):
    """The correction config with the calibration flags (origin, pixels_per_rlu, rotation, centre, zones,
    lattice: the flags' own text) applied over ``--set``."""
    from .config import CENTRINGS, ZONE_RULES, CorrectionConfig, load_config
    from .errors import ConfigError

    if calibration["zones"] not in (None, *ZONE_RULES):
        raise ConfigError(f"--zones must be all or centre, got {calibration['zones']!r}")
    if calibration["lattice"] not in (None, *CENTRINGS):
        raise ConfigError(f"--lattice must be one of {', '.join(CENTRINGS)}, got {calibration['lattice']!r}")
    return load_config(
        config,
        set_ or (),
        root=CorrectionConfig,
        **{
            "geometry.origin": _pair(calibration["origin"], "--origin"),
            "geometry.pixels_per_rlu": _pair(calibration["pixels_per_rlu"], "--pixels-per-rlu"),
            "geometry.rotation": calibration["rotation"],
            "geometry.centre": _centre(calibration["centre"]),
            "geometry.zones": calibration["zones"],
            "geometry.lattice": calibration["lattice"],
            "mask.file": mask,
        },
    )


def _centre(text: str | None) -> list[float] | dict[str, float] | None:
    """--centre ROW,COL or by the file's axis names, H=-2,L=4 (a reciprocal lattice point either way)."""
    if text is None or "=" not in text:
        return _pair(text, "--centre")
    from .errors import ConfigError

    named = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            named[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--centre must be ROW,COL or NAME=VALUE,NAME=VALUE such as H=-2,L=4 (got {text!r})"
                              ) from None  # fmt: skip
    if len(named) != 2 or not all(named):
        raise ConfigError(f"--centre must name two axes, such as H=-2,L=4 (got {text!r})")
    return named


Origin = Annotated[str | None, typer.Option(help="Calibration: pixel ROW,COLUMN of h = k = 0.")]
PixelsPerRlu = Annotated[
    str | None, typer.Option(help="Calibration: pixels per reciprocal lattice unit along ROWS,COLUMNS.")
]
Rotation = Annotated[float | None, typer.Option(help="Calibration: rotation of h, k against the pixels (deg).")]
Centre = Annotated[
    str | None,
    typer.Option(help="Centre the window on this reciprocal lattice point: by the file's axis names (H=-2,L=4) "
                 "or as ROW,COL in the file's axes (r.l.u.).", metavar="H=-2,L=4|ROW,COL"),
]  # fmt: skip
Zones = Annotated[
    str | None,
    typer.Option(help="all: fold every measured zone onto the window (calibrated images); centre: the window only.",
                 metavar="all|centre"),
]  # fmt: skip
Lattice = Annotated[
    str | None,
    typer.Option(help="The crystal's centring, for the plane's reciprocal lattice points (default P); F: (H, L) "
                 "both even in h0l.", metavar="P|I|F|C|A|B"),
]  # fmt: skip
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
MaskFile = Annotated[str | None, typer.Option(help="Mask image: nonzero pixels are excluded (mask.file).")]
Frames = Annotated[str | None, typer.Option(help="Frames a:b of 3-D stacks, each an image (or FILE[3] for one frame).")]
SumFrames = Annotated[bool, typer.Option("--sum-frames", help="Sum the (selected) frames of 3-D stacks into one.")]
Plane = Annotated[
    str | None,
    typer.Option(help="Plane of 3-D h, k, l volumes: l=0 (the nearest slice) or l=0+-0.05 (the sum of slices)."),
]


@app.command(
    epilog=_examples(
        [
            "cfsx correct 'scans/*.cbf' -o corrected.h5 --origin 1024,980 --pixels-per-rlu 160,160",
            "cfsx correct ZrO2.nxs -o zro2.h5 --lattice F --set mask.edge=2 --figures figures/",
            "cfsx correct ZrO2.nxs -o one.h5 --lattice F --zones centre --centre H=-2,L=4",
        ]
    )
)
def correct(
    images: Annotated[
        list[str], typer.Argument(help="Image files (.npy, TIFF, PNG, HDF5 file::/path, fabio formats), dirs, globs.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Corrected images to write (.h5).")],
    config: Annotated[str, typer.Option(help="Correction config: a YAML file or a built-in name.")] = "correct",
    mask: MaskFile = None,
    frames: Frames = None,
    sum_frames: SumFrames = False,
    plane: Plane = None,
    origin: Origin = None,
    pixels_per_rlu: PixelsPerRlu = None,
    rotation: Rotation = None,
    centre: Centre = None,
    zones: Zones = None,
    lattice: Lattice = None,
    reference: Annotated[
        Path | None, typer.Option(help="Training dataset: match its intensity distribution (and plot it).")
    ] = None,
    figures: Annotated[
        Path | None, typer.Option("--figures", help="Directory for one before/after figure per image.")
    ] = None,
    figure: Annotated[Path | None, typer.Option("--figure", hidden=True, help="Old spelling of --figures.")] = None,
    set_: SetOverrides = None,
    json_: JsonFlag = False,
) -> None:
    """Clean measured images (mask, Bragg peaks, resample, fill, smooth, normalise) for the CNN."""
    with _reported_errors():
        from .correction import correct_files
        from .readers import expand_inputs, select_frames, select_plane

        images = select_frames(expand_inputs(images), frames, sum_frames)
        images = select_plane(images, plane)

        calibration = {"origin": origin, "pixels_per_rlu": pixels_per_rlu, "rotation": rotation, "centre": centre,
                       "zones": zones, "lattice": lattice}  # fmt: skip
        resolved = _correction_config(config, set_, calibration, mask)
        with _progress_bar() as bar:
            task = bar.add_task("correct", total=None, rate="")
            results = correct_files(
                images,
                output,
                resolved,
                reference=str(reference) if reference else None,
                figure_dir=_renamed("--figure", figure, "--figures", figures),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        out = _result_console(json_)
        for correction in results[:20]:
            out.print(correction.summary(), highlight=False)
        if len(results) > 20:
            out.print(f"... and {len(results) - 20} more images")
        console.print(f"wrote {len(results)} corrected images to {output}", highlight=False)
        if json_:
            _print_json({"output": output, "images": [correction.record() for correction in results]})


@app.command(
    epilog=_examples(
        [
            "cfsx interpret plane.tif -o plane/ --origin 1024,980 --pixels-per-rlu 160,160",
            "cfsx interpret corrected.h5 -o batch/ --model general-cfs2 --replicates 0 --no-figures",
            "cfsx interpret corrected.h5 -o mine/ --model my.keras",
        ]
    )
)
def interpret(
    images: Annotated[
        list[str],
        typer.Argument(help="Raw images (as for cfsx correct) or .h5 files of cfsx correct or simulate; dirs, globs."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory: results.json, results.h5, figures.")],
    model: Annotated[
        str | None,
        typer.Option(help="A built-in model's name (cfsx models) or a .keras file (default: general-cfs4)."),
    ] = None,
    config: Annotated[str, typer.Option(help="Interpretation config: a YAML file or a built-in name.")] = "interpret",
    refine: Annotated[
        bool | None, typer.Option("--refine/--no-refine", help="Refine each encoding against its image.")
    ] = None,
    replicates: Annotated[
        int | None, typer.Option(help="Decoded structures per image (decode.replicates); 0: the CNN only.")
    ] = None,
    figures: Annotated[
        Path | None,
        typer.Option("--figures", help="Directory for the figures, one per image (default: OUTPUT/figures)."),
    ] = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Write no figures (output.figures: false).")] = False,
    record: Annotated[
        Path | None, typer.Option(help="Knowledge store (.h5) to append the interpreted images to.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Processes for decoding " + DEFAULT_WORKERS),
    ] = None,
    correct_config: Annotated[
        str | None, typer.Option("--correct-config", help="Correction config for raw images (default: correct).")
    ] = None,
    correction: Annotated[
        str | None, typer.Option("--correction", hidden=True, help="Old spelling of --correct-config.")
    ] = None,
    mask: MaskFile = None,
    frames: Frames = None,
    sum_frames: SumFrames = False,
    plane: Plane = None,
    origin: Origin = None,
    pixels_per_rlu: PixelsPerRlu = None,
    rotation: Rotation = None,
    centre: Centre = None,
    zones: Zones = None,
    lattice: Lattice = None,
    set_: SetOverrides = None,
    correct_set: Annotated[
        list[str] | None, typer.Option("--correct-set", help="Override a correction config value (repeatable).")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 7 when any image is not explained (results still written).")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Interpret images: encoding, decoded structure and image, fit quality, verdict, uncertainty, refinement."""
    with _reported_errors():
        from .builtin import DEFAULT_MODEL
        from .config import InterpretationConfig, load_config
        from .interpretation import InterpretationOutput
        from .interpretation import interpret as run_interpretation
        from .readers import expand_inputs, select_frames, select_plane
        from .simulation import worker_count

        if figures is not None and no_figures:
            raise _fail("--figures DIR and --no-figures contradict each other: give one of them", EXIT_USAGE)
        if images[0].endswith(".keras") and len(images) > 1:  # the old form: cfsx interpret MODEL IMAGES...
            model = _renamed("a first argument MODEL.keras", images[0], "--model", model)
            images = images[1:]
        images = select_frames(expand_inputs(images), frames, sum_frames)
        images = select_plane(images, plane)

        resolved = load_config(
            config,
            set_ or (),
            root=InterpretationConfig,
            **{
                "refine.enabled": refine,
                "decode.replicates": replicates,
                "output.figures": False if no_figures else None,
            },
        )
        correction_name = _renamed("--correction", correction, "--correct-config", correct_config) or "correct"
        calibration = {"origin": origin, "pixels_per_rlu": pixels_per_rlu, "rotation": rotation, "centre": centre,
                       "zones": zones, "lattice": lattice}  # fmt: skip
        cleaning = _correction_config(correction_name, correct_set, calibration, mask)
        processes = worker_count(workers)
        with _progress_bar() as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total, rate="")
                bar.update(tasks[stage], completed=done, total=total)

            destination = InterpretationOutput(output, record, figures)
            result = run_interpretation(model or DEFAULT_MODEL, images, destination, resolved, cleaning,
                                        workers=processes, progress=progress)  # fmt: skip
        _print_interpretation(result.interpretations, _result_console(json_))
        console.print(f"results: {result.output_dir / 'results.json'} ({result.seconds['total']:.1f} s)")
        if record is not None:
            skipped = result.document.get("store_skipped", 0)
            console.print(f"recorded into {record} (now {result.document['store_size']} images"
                          + (f"; {skipped} not explained left out)" if skipped else ")"))  # fmt: skip
        if json_:
            _print_json(result.document)
        from .fit_quality import NOT_EXPLAINED

        if strict and any(item.verdict and item.verdict.label == NOT_EXPLAINED for item in result.interpretations):
            raise _fail("--strict: some images are not explained (their verdicts above)", EXIT_NOT_EXPLAINED)


@app.command(
    epilog=_examples(
        [
            "cfsx serve",
            "cfsx serve --model general-cfs4 --model mine.keras --store /data/cfsx-store --workers 4",
            "cfsx serve --host 0.0.0.0 --port 8080 --token-file ~/.cfsx-token",
        ]
    )
)
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    model: Annotated[
        list[str] | None, typer.Option(help="Model to serve: built-in name or .keras file (repeatable; default all).")
    ] = None,
    store: Annotated[Path, typer.Option(help="Directory for results, knowledge stores and feedback.")] = Path(
        "cfsx-serve"
    ),
    workers: Annotated[int | None, typer.Option(help="Interpretation worker processes " + DEFAULT_WORKERS)] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File holding a token that every request must carry (chmod 600).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted (MB).")] = 64.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image accepted (pixels).")] = 64 * 2**20,
    retention_days: Annotated[float, typer.Option(help="Days the uploads and result files are kept.")] = 30.0,
    queue: Annotated[int, typer.Option(help="Requests waiting or running before 503 (at least 8).")] = 16,
    replicates: Annotated[
        int, typer.Option(help="Decoded structures per image unless a request asks (0: CNN only, not stored).")
    ] = 1,
) -> None:
    """Serve interpretation as a web page and a JSON API, keeping every result and all feedback (docs/serve.md)."""
    with _reported_errors():
        try:
            from .serve import ServeSettings, read_token, run, served_models
        except ImportError:
            from .errors import MissingDependencyError

            raise MissingDependencyError("cfsx serve needs its extra: pip install 'cfsx[serve]'") from None
        from .simulation import worker_count

        settings = ServeSettings(
            models=served_models(list(model or ())), store=store, workers=worker_count(workers),
            token=read_token(token_file) if token_file else None, max_upload_bytes=int(max_upload_mb * 2**20),
            max_pixels=max_pixels, retention_days=retention_days, queue=queue, replicates=replicates,
        )  # fmt: skip
        console.print(f"serving {', '.join(settings.models)} on http://{host}:{port}/ with {settings.workers} "
                      f"workers; store: {store}", highlight=False)  # fmt: skip
        run(settings, host, port)


def _print_interpretation(interpretations, out: Console) -> None:
    """The table of the images (final answer, verdict, fit of every estimate's model image, ceilings), a warning
    line for each image not fully explained, and the first image's encoding with its verdict."""
    from .estimates import FINAL_RULE
    from .fit_quality import EXPLAINED, NOT_EXPLAINED
    from .results import short_name

    first = interpretations[0]
    methods = list(first.estimates)
    kind = "structure" if first.decoded is not None else "analytic"
    table = Table(title=f"CFS{first.provenance.model.cfs} interpretation: R1 / R2 of each estimate's {kind} image "
                  "on the measured cells")  # fmt: skip
    columns = ["image", "verdict", "final answer", *methods, "ceiling: range / periodic"]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right", overflow="fold")
    for item in interpretations[:20]:
        row = [short_name(item.source), _verdict_text(item.verdict), item.final_source.replace("_", " ")]
        for name in methods:
            fit = (item.fits or {}).get(name)
            quality = None if fit is None else (fit.structure or fit.analytic)
            row.append("-" if quality is None else f"{quality.r1:.3f} / {quality.r2:.3f}")
        limits = item.ceilings
        row.append("-" if limits is None else f"{limits.range_r2:.2f} / {limits.periodic_r2:.2f}")
        table.add_row(*row)
    out.print(table)
    console.print(f"final answer: {FINAL_RULE}", highlight=False)
    if len(interpretations) > 20:
        console.print(f"... and {len(interpretations) - 20} more images")
    for item in interpretations:
        if item.verdict is not None and item.verdict.label != EXPLAINED:
            colour = "red" if item.verdict.label == NOT_EXPLAINED else "yellow"
            console.print(f"[{colour}]warning[/{colour}]: {escape(short_name(item.source))} is "
                          f"{escape(item.verdict.line())}", highlight=False)  # fmt: skip
    verdict = escape(f" [{first.verdict.label}]") if first.verdict is not None else ""
    console.print(f"encoding of {escape(first.summary())}{verdict}", highlight=False)


def _verdict_text(verdict) -> str:
    from .fit_quality import EXPLAINED, NOT_EXPLAINED, PARTLY

    if verdict is None:
        return "-"
    colour = {EXPLAINED: "green", PARTLY: "yellow", NOT_EXPLAINED: "red"}[verdict.label]
    return f"[{colour}]{verdict.label}[/{colour}]"


def _std(values) -> float:
    import numpy as np

    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
