"""``cfsx simulate``, ``cfsx corrupt`` and ``cfsx merge``: commands that write datasets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cfsx.app.cli.common import (
    DEFAULT_WORKERS,
    JsonFlag,
    SetOverrides,
    app,
    console,
    examples,
    print_json,
    progress_bar,
    reported_errors,
)


@app.command(
    epilog=examples(
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
    with reported_errors():
        from cfsx import simulation
        from cfsx.config import load_config
        from cfsx.errors import ConfigError
        from cfsx.simulation.cluster import Scheduler

        resolved = load_config(config, set_ or (), **{"run.samples": samples, "run.seed": seed})
        shard_spec = simulation.Shard.parse(shard) if shard else None
        simulation.check_run_options(output, workers)
        cluster = None
        if scheduler is not None or scheduler_file is not None:
            if workers is not None:
                raise ConfigError("--workers is for the local process pool; a Dask cluster has its own workers")
            cluster = Scheduler(address=scheduler, scheduler_file=scheduler_file, timeout=scheduler_timeout)
        with progress_bar() as bar:
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
        console.print(report.summary(), highlight=False, markup=False)
        if json_:
            print_json(report)


@app.command(
    epilog=examples(["cfsx corrupt cfs4.h5 -o cfs4-corrupted.h5", "cfsx train cfs4.h5 cfs4-corrupted.h5 -o cfs4.keras"])
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
    with reported_errors():
        from cfsx.io.cpus import worker_count
        from cfsx.io.outputs import claim_outputs
        from cfsx.learning.corruption import corrupted_copy

        with claim_outputs(files=[output], inputs=[data]), progress_bar() as bar:
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


@app.command(epilog=examples(["cfsx merge part-*.h5 -o data.h5"]))
def merge(
    shards: Annotated[list[Path], typer.Argument(help="Shard files written with --shard i/N.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Merged dataset to write.")],
) -> None:
    """Join the shards of one run into the dataset a single run writes."""
    with reported_errors():
        from cfsx.io.dataset import merge_shards

        total = merge_shards(list(shards), output)
        console.print(f"merged {len(shards)} shards, {total} samples, into {output}", markup=False)
