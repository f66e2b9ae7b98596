"""``cfsx train``: fit a CNN to the image -> encoding pairs of a dataset.

The split into training, validation and hold-out samples is a seeded permutation, recorded in
the model, so ``cfsx evaluate`` scores exactly the samples that training never saw. Batches are
read from the .h5 file as they are needed (in memory when the images fit the configured limit),
through tf.data, so the dataset's size is bounded by the disk, not by memory. The weights of
the epoch with the lowest validation loss are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfsx import __version__
from cfsx.config import TrainingConfig, config_from_yaml_text
from cfsx.errors import DataError, Terminated
from cfsx.io import checkpoint, plots
from cfsx.io.outputs import atomic_path, claim_outputs
from cfsx.learning import models
from cfsx.learning._tensorflow import keras, tf
from cfsx.learning.callbacks import (
    Checkpointer,
    EpochReport,
    Monitor,
    PlateauReducer,
    distribution_strategy,
    history_csv,
    is_chief,
)
from cfsx.learning.data import (
    DataSummary,
    Split,
    dataset_seeds,
    open_reader,
    predict_indices,
    sample_batches,
    split_by_seed,
    summarise_datasets,
    tf_dataset,
)
from cfsx.learning.model_card import DataFile, ModelCard, SampleCounts, Scores, TrainingRun, read_model_card
from cfsx.learning.training_records import TrainingArrays, TrainingResult, data_file_of, side_paths
from cfsx.physics.encoding import cfs_vectors, transpose_permutation, vector_labels
from cfsx.physics.metrics import regression_metrics

log = logging.getLogger(__name__)


def train(
    data_paths: str | Path | list[str | Path] | TrainingArrays,
    output: str | Path,
    config: TrainingConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    init: str | Path | None = None,
    resume: bool = False,
) -> TrainingResult:
    """Train the configured architecture on one or more datasets and save the model with its metadata.

    With ``init`` (a saved model) training starts from that model's weights and architecture:
    fine-tuning, for example on simulated data plus a knowledge store of interpreted images.
    Every epoch is checkpointed in MODEL.parts/ (removed when training completes); with ``resume``
    a killed or interrupted run continues from its last completed epoch and ends with the weights
    an uninterrupted run gives (without checkpoints it starts afresh). ``data_paths`` may also be
    ``TrainingArrays``: they are written to MODEL-data.h5 and trained on from there.
    """
    output = Path(output)
    if output.suffix != ".keras":
        raise DataError(f"the model file must end in .keras: {output}")
    arrays = data_paths if isinstance(data_paths, TrainingArrays) else None
    paths = [data_file_of(output)] if arrays else data_paths if isinstance(data_paths, list) else [data_paths]
    written = [data_file_of(output)] if arrays else []
    with claim_outputs(files=[output, *side_paths(output), *written], directories=[checkpoint.parts_dir(output)],
                       inputs=[*paths, init] if not arrays else [init]):  # fmt: skip
        if arrays is not None and not (resume and paths[0].exists()):
            arrays.write(paths[0])
        return _train(paths, output, config, on_epoch, init, resume)


@dataclass
class _Run:
    """One training run as its steps hand it on: the data, its split, the model and what the fit did."""

    summary: DataSummary
    split: Split
    config: TrainingConfig
    init: str | Path | None
    strategy: Any = None
    model: Any = None
    monitor: Monitor | None = None
    first_epoch: int = 0
    interrupted: bool = False
    terminated: bool = False
    scores: dict[str, Any] | None = None
    seconds: float = 0.0


def _train(
    data_paths: list[str | Path],
    output: Path,
    config: TrainingConfig,
    on_epoch: Callable[[EpochReport], None] | None,
    init: str | Path | None,
    resume: bool,
) -> TrainingResult:
    summary = summarise_datasets(data_paths, config.model.cfs)
    initial = _check_init(init, summary) if init is not None else None
    if initial is not None:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, architecture=initial.architecture))
    fit = config.fit
    run = _Run(summary, split_by_seed(dataset_seeds(summary), fit.validation_split, fit.test_split, fit.seed), config,
               init)  # fmt: skip
    learning_rate = fit.learning_rate if init is None else fit.fine_tune_learning_rate
    _compile(run, learning_rate)
    chief = is_chief(run.strategy)
    parts = checkpoint.parts_dir(output)
    manifest = {"config": config.to_dict(), "data": [fingerprint for _, _, fingerprint in summary.parts],
                "init": None if init is None else str(init)}  # fmt: skip
    state = checkpoint.prepare(parts, manifest, resume) if chief else None
    run.monitor = Monitor(len(run.split.train), fit.patience, on_epoch, fit.epochs)
    reducer = None
    if state is not None:
        _restore(run.model, state)
        run.monitor.restore(state)
    if fit.reduce_lr_patience:
        reducer = PlateauReducer(state.plateau if state else None, factor=0.5, patience=fit.reduce_lr_patience,
                                  min_lr=learning_rate / 64)  # fmt: skip
    run.first_epoch = state.epoch if state else 0
    log.info("%s: %d training, %d validation, %d hold-out samples; %s from epoch %d of %d",
             output, len(run.split.train), len(run.split.validation), len(run.split.test), config.model.architecture,
             run.first_epoch + 1, fit.epochs)  # fmt: skip
    callbacks = [run.monitor.callback, *([reducer] if reducer else [])]
    if chief:
        callbacks.append(Checkpointer(parts, run.monitor, reducer, state.seconds if state else 0.0))
    started = time.perf_counter() - (state.seconds if state else 0.0)
    _fit(run, callbacks)
    run.seconds = time.perf_counter() - started
    return _save(run, output, parts, chief)


def _compile(run: _Run, learning_rate: float) -> None:
    """The run's model (new, or the one it is initialised from), compiled under its distribution strategy."""
    summary, fit = run.summary, run.config.fit
    keras.utils.set_random_seed(fit.seed)
    tf.config.experimental.enable_op_determinism()
    run.strategy = distribution_strategy(fit.strategy)
    with run.strategy.scope():
        if run.init is None:
            run.model = models.build_model(run.config.model.architecture, summary.image_size, summary.n_components,
                                           cfs_vectors(summary.cfs).tolist(), summary.h_max)  # fmt: skip
        else:
            run.model = models.load_model(run.init)[0]
        run.model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse",
                          metrics=["mae", keras.metrics.R2Score(name="r2")])  # fmt: skip


def _restore(model, state) -> None:
    """The weights and optimizer state of a checkpoint (``train --resume``), refused in one line when they do not
    fit the model (another architecture, a damaged file)."""
    expected = [tuple(weight.shape) for weight in model.get_weights()]
    model.optimizer.build(model.trainable_variables)
    slots = [tuple(variable.shape) for variable in model.optimizer.variables]
    best = state.best_weights or state.weights
    if ([w.shape for w in state.weights] != expected or [w.shape for w in best] != expected
            or [v.shape for v in state.optimizer] != slots):  # fmt: skip
        raise DataError("cannot resume: the checkpoint's weights do not fit this model (a damaged state.npz, or a "
                        "checkpoint of another run): train without --resume")  # fmt: skip
    model.set_weights(state.weights)
    for variable, value in zip(model.optimizer.variables, state.optimizer, strict=True):
        variable.assign(value)


def _fit(run: _Run, callbacks: list) -> None:
    """The fit from the run's first epoch, then the best weights and their scores on validation and hold-out.
    Ctrl-C or SIGTERM after a finished epoch keeps what was learned (``run.interrupted``)."""
    summary, fit, split, monitor = run.summary, run.config.fit, run.split, run.monitor
    transpose = transpose_permutation(cfs_vectors(summary.cfs)) if fit.augment else None
    with open_reader(summary, fit.memory_limit_mb) as reader:
        shapes = (summary.image_size, summary.n_components)
        batches = sample_batches(reader, split.train, fit.batch_size, fit.seed, transpose, first_pass=run.first_epoch)
        train_data = tf_dataset(batches, -(-len(split.train) // fit.batch_size), *shapes)
        validation_data = tf_dataset(sample_batches(reader, split.validation, 256), -(-len(split.validation) // 256),
                                      *shapes)  # fmt: skip
        try:
            if not monitor.stopped:
                run.model.fit(train_data, validation_data=validation_data, epochs=fit.epochs,
                              initial_epoch=run.first_epoch, verbose=0, shuffle=False, callbacks=callbacks)  # fmt: skip
        except tf.errors.OpError as error:  # an exception in the input pipeline arrives wrapped
            raise reader.failure or DataError(f"training failed: {error.message.splitlines()[0]}") from None
        except KeyboardInterrupt as stop:
            # With at least one finished epoch the best weights so far are saved (the metadata says
            # "interrupted") and MODEL.parts/ stays for --resume.
            if monitor.best_weights is None:
                raise
            run.interrupted, run.terminated = True, isinstance(stop, Terminated)
        run.model.set_weights(monitor.best_weights)
        labels = vector_labels(cfs_vectors(summary.cfs))
        run.scores = {
            name: regression_metrics(*predict_indices(run.model, reader, indices), labels)
            for name, indices in (("validation", split.validation), ("test", split.test))
        }


def _card(run: _Run, output: Path) -> ModelCard:
    """The card the model file carries (cfsx.learning.model_card writes and reads it)."""
    summary, config, split, monitor = run.summary, run.config, run.split, run.monitor
    vectors = cfs_vectors(summary.cfs)
    training = TrainingRun(
        config=config.to_dict(),
        data=", ".join(str(path) for path, _, _ in summary.parts),
        data_fingerprint=summary.fingerprint,
        data_files=[DataFile(str(path), samples, fingerprint) for path, samples, fingerprint in summary.parts],
        initialised_from=None if run.init is None else str(run.init),
        samples=SampleCounts(len(split.train), len(split.validation), len(split.test)),
        strategy=config.fit.strategy,
        replicas=run.strategy.num_replicas_in_sync,
        epochs_run=len(monitor.history),
        interrupted=run.interrupted,
        resumed_at_epoch=run.first_epoch or None,
        best_epoch=monitor.best_epoch,
        seconds=run.seconds,
        history=monitor.history,
    )
    return ModelCard(
        path=output,
        cfs=summary.cfs,
        vectors=vectors,
        labels=vector_labels(vectors),
        image_size=summary.image_size,
        h_max=summary.h_max,
        lot_size=summary.lot_size,
        decoding_config=decode_config_text(config.model.decode_config, summary),
        training=training,
        hold_out=Scores.of(run.scores["test"]),
        hold_out_indices=np.asarray(split.test, dtype=np.int64),
        validation=Scores.of(run.scores["validation"]),
        validation_indices=np.asarray(split.validation, dtype=np.int64),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        cfsx_version=__version__,
    )


def _save(run: _Run, output: Path, parts: Path, chief: bool) -> TrainingResult:
    """The model file with its metadata, the history and the loss curves; the checkpoints go once the run is done."""
    card = _card(run, output)
    history_path, curve_path = side_paths(output)
    if not chief:
        # Every worker of a multi-worker run must save (saving can involve collective operations);
        # only the chief's file is kept.
        with tempfile.TemporaryDirectory() as folder:
            models.save_model(run.model, card, Path(folder) / output.name)
        return TrainingResult(output, history_path, curve_path, card, run.terminated)
    models.save_model(run.model, card, output)
    with atomic_path(history_path) as temporary:
        temporary.write_text(history_csv(run.monitor.history))
    title = f"{run.config.model.architecture} on CFS{run.summary.cfs}"
    plots.save(plots.loss_curves(run.monitor.history, title=title), curve_path)
    if not run.interrupted:
        checkpoint.clear(parts, checkpoint.TRAINING_FILES, refuse_foreign=False)
    return TrainingResult(output, history_path, curve_path, card, run.terminated)


def decode_config_text(name: str | None, summary: DataSummary) -> str:
    """The simulation config a model records for decoding: ``model.decode_config`` (a name or path) or the
    first data file's, with the model's encoding."""
    if name is None and summary.columns is None:
        return summary.config_text
    from cfsx.config import load_config

    simulation = load_config(name) if name is not None else config_from_yaml_text(summary.config_text)
    return dataclasses.replace(simulation, encoding=dataclasses.replace(simulation.encoding, cfs=summary.cfs)).to_yaml()


def _check_init(init: str | Path, summary: DataSummary) -> ModelCard:
    """The card of the model to start from, refused when it does not fit the data."""
    card = read_model_card(init)
    if card.cfs != summary.cfs or card.image_size != summary.image_size:
        raise DataError(
            f"{init} maps {card.image_size}-point images to CFS{card.cfs} encodings; the data has "
            f"{summary.image_size}-point images with CFS{summary.cfs} labels"
        )
    if not np.isclose(card.h_max, summary.h_max):
        raise DataError(f"{init} was trained with h_max {card.h_max}, the data has h_max {summary.h_max}")
    return card
