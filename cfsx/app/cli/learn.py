"""``cfsx train`` and ``cfsx evaluate``."""

from __future__ import annotations

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
from cfsx.errors import (
    EXIT_RESUMABLE,
    EXIT_SIGINT,
)


def _training_config(config: str, set_: list[str] | None, **flags):
    from cfsx.config import TrainingConfig, load_config

    return load_config(config, set_ or (), root=TrainingConfig, **flags)


@app.command(
    epilog=examples(
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
    with reported_errors():
        from cfsx.learning.training import train as run_training

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
        with progress_bar() as bar:
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
        console.print(result.summary(), highlight=False, markup=False)
        if json_:
            print_json(result.record())
        if result.interrupted:
            raise typer.Exit(EXIT_RESUMABLE if result.terminated else EXIT_SIGINT)


@app.command(
    epilog=examples(
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
    with reported_errors():
        from cfsx.io.cpus import worker_count
        from cfsx.learning.evaluation import evaluate as run_evaluation

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
            print_json(report)
        console.print(report.summary(), highlight=False, markup=False)
