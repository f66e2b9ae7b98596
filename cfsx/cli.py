"""The ``cfsx`` command line: parse, call one library function, print."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .errors import CfsxError

app = typer.Typer(
    name="cfsx",
    help="Interpret X-ray diffuse scattering with CNNs trained on Monte Carlo simulations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
state = {"debug": False}


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    state["debug"] = debug


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """Turn cfsx errors into one red line on stderr and a non-zero exit."""
    try:
        yield
    except CfsxError as error:
        if state["debug"]:
            raise
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    except OSError as error:
        if state["debug"]:
            raise
        console.print(
            f"[red]error:[/red] {error.strerror or error}: {error.filename or ''}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(5) from None


def _progress_bar():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


@app.command()
def simulate(
    config: Annotated[
        str, typer.Argument(help="YAML config file, or a built-in name: demo, cfs2, cfs3, cfs4, cfs4-hires.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset file to write (.h5).")],
    samples: Annotated[int | None, typer.Option(help="Number of samples (run.samples).")] = None,
    seed: Annotated[int | None, typer.Option(help="Master seed (run.seed).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [default: all cores].")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: section.key=value (repeatable)."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoints.")] = False,
    shard: Annotated[str | None, typer.Option(help="Write shard i of N (i/N, 0-based) of the run.")] = None,
) -> None:
    """Simulate image/encoding pairs with the Monte Carlo engine and write a dataset."""
    with _reported_errors():
        from . import simulate as simulation
        from .config import load_config

        resolved = load_config(config, set_ or (), **{"run.samples": samples, "run.seed": seed})
        shard_spec = simulation.Shard.parse(shard) if shard else None
        simulation.check_run_options(output, workers)
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
                resolved, output, workers=workers, resume=resume, shard=shard_spec, progress=progress
            )
        reach = report.reach
        console.print(
            f"wrote {report.samples} samples to {report.output} in {report.seconds:.1f} s"
            + (f" ({report.resumed_samples} from checkpoints)" if report.resumed_samples else "")
        )
        console.print(
            f"targets reached within {reach.tolerance:g}: {100 * reach.reached_fraction:.1f} % of samples; "
            f"max |achieved - target| per sample: median {reach.median_max_deviation:.3f}, "
            f"95th percentile {reach.p95_max_deviation:.3f}, worst {reach.worst_max_deviation:.3f}"
        )


@app.command()
def merge(
    shards: Annotated[list[Path], typer.Argument(help="Shard files written with --shard i/N.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Merged dataset to write.")],
) -> None:
    """Join the shards of one run into the dataset a single run writes."""
    with _reported_errors():
        from .dataset import merge_shards

        total = merge_shards(list(shards), output)
        console.print(f"merged {len(shards)} shards, {total} samples, into {output}")


@app.command()
def info(path: Annotated[Path, typer.Argument(help="A cfsx dataset (.h5).")]) -> None:
    """Describe a dataset: size, settings, label statistics, how well the targets were reached."""
    with _reported_errors():
        from .dataset import describe
        from .encoding import vector_labels

        details = describe(path)
        out = Console()
        out.print(
            f"[bold]{details.path}[/bold]: cfsx dataset, {details.samples} samples, CFS{details.cfs} "
            f"(D = {len(details.vectors)}), images {' x '.join(map(str, details.image_shape))}"
        )
        out.print(
            f"created {details.created} by cfsx {details.cfsx_version}"
            + (f"; shard {details.shard[0]} of {details.shard[1]}" if details.shard else "")
            + ("; lattices stored" if details.has_lattices else "")
        )
        if details.config:
            lattice, diffraction, feedback = details.config.lattice, details.config.diffraction, details.config.feedback
            out.print(
                f"lattice {lattice.size} x {lattice.size}, c = {lattice.concentration}; "
                f"lots: {diffraction.n_lots} of {diffraction.lot_size} x {diffraction.lot_size}; "
                f"h_max = {diffraction.h_max}; seed {details.config.run.seed}; "
                f"feedback gain {feedback.gain}, {feedback.sweeps_per_cycle} sweeps/cycle, "
                f"tolerance {feedback.tolerance}, <= {feedback.max_cycles} cycles, "
                f"|J| <= {feedback.coupling_bound}"
            )
        table = Table(title="labels (achieved alpha)")
        for column in ("component", "mean", "std", "min", "max"):
            table.add_column(column, justify="right")
        for i, label in enumerate(vector_labels(details.vectors)):
            table.add_row(
                label,
                *(
                    f"{values[i]:+.3f}"
                    for values in (
                        details.label_mean,
                        details.label_std,
                        details.label_min,
                        details.label_max,
                    )
                ),
            )
        out.print(table)
        if details.reach:
            reach = details.reach
            out.print(
                f"targets reached within {reach.tolerance:g}: {100 * reach.reached_fraction:.1f} % of samples; "
                f"max |achieved - target| per sample: mean {reach.mean_max_deviation:.3f}, median "
                f"{reach.median_max_deviation:.3f}, 95th percentile {reach.p95_max_deviation:.3f}, worst "
                f"{reach.worst_max_deviation:.3f}; "
                f"feedback cycles: mean {reach.mean_cycles:.1f}, max {reach.max_cycles}"
            )
