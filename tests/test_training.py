"""cfsx train and evaluate: learning, the one-file model, the hold-out, metrics and bad input."""

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.config import TrainingConfig, load_config
from cfsx.errors import DataError
from cfsx.io.dataset import open_dataset
from cfsx.learning import models
from cfsx.learning._tensorflow import keras
from cfsx.learning.data import SampleReader, split_indices, summarise_data
from cfsx.learning.evaluation import evaluate
from cfsx.learning.evaluation_report import EvaluationReport
from cfsx.learning.model_card import read_metadata
from cfsx.learning.training import train
from cfsx.physics import engine, metrics
from cfsx.physics.encoding import cfs_vectors, transpose_permutation
from cfsx.physics.inversion import WarrenCowleyInversion
from cfsx.simulation import simulate


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, small_run):
    folder = tmp_path_factory.mktemp("training")
    simulate(small_run(2, 240), folder / "cfs2.h5", workers=1)
    simulate(small_run(3, 20), folder / "cfs3.h5", workers=1)
    return folder


def training_config(**fit) -> TrainingConfig:
    flags = {f"fit.{key}": value for key, value in fit.items()}
    return load_config("train-demo", ["evaluation.resimulated=6"], root=TrainingConfig, **flags)


@pytest.fixture(scope="module")
def trained(data_dir):
    return train(data_dir / "cfs2.h5", data_dir / "model.keras", training_config(epochs=12))


def test_training_lowers_the_loss_and_predicts_the_hold_out(trained):
    history = trained.card.training.history
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert min(row["val_loss"] for row in history) < 0.5 * history[0]["val_loss"]
    assert trained.card.hold_out.r2 > 0.5
    assert trained.history_path.read_text().startswith("epoch,")
    assert trained.curve_path.stat().st_size > 1000


def test_best_validation_epoch_is_kept(trained):
    history = trained.card.training.history
    best = int(np.argmin([row["val_loss"] for row in history]))
    assert trained.card.training.best_epoch == best + 1
    validation_mse = trained.card.validation.mse
    assert validation_mse == pytest.approx(history[best]["val_loss"], rel=1e-3)


def test_saved_model_keeps_metadata_and_outputs(trained, data_dir):
    model, card = models.load_model(trained.model_path)
    assert card.cfs == 2 and card.image_size == 32
    assert card.vectors.tolist() == cfs_vectors(2).tolist()
    assert card.hold_out_indices.tolist() == trained.card.hold_out_indices.tolist()
    assert card.metadata == trained.card.metadata  # the document written is the document read
    assert "encoding:" in card.decoding_config
    with h5py.File(data_dir / "cfs2.h5") as file:
        images = file["images"][:8]
    again, _ = models.load_model(trained.model_path)
    np.testing.assert_array_equal(model.predict_on_batch(images), again.predict_on_batch(images))
    with zipfile.ZipFile(trained.model_path) as archive:
        assert not any(name.endswith((".pkl", ".pickle")) for name in archive.namelist())


@pytest.mark.parametrize("architecture", ["small", "wide", "large", "hybrid"])
def test_output_does_not_change_with_the_image_scale(architecture):
    model = models.build_model(architecture, 32, 3, cfs_vectors(2).tolist(), 1.0)
    images = np.random.default_rng(0).gamma(2.0, 0.1, size=(4, 32, 32)).astype(np.float32)
    reference = np.asarray(model.predict_on_batch(images))
    for factor in (1e-4, 0.37, 3.0, 1e5):
        scaled = np.asarray(model.predict_on_batch(images * np.float32(factor)))
        np.testing.assert_allclose(scaled, reference, rtol=1e-4, atol=1e-5)


def test_training_is_reproducible(data_dir, tmp_path):
    config = training_config(epochs=2)
    first = train(data_dir / "cfs2.h5", tmp_path / "a.keras", config)
    second = train(data_dir / "cfs2.h5", tmp_path / "b.keras", config)
    assert first.card.metadata["metrics"] == second.card.metadata["metrics"]


def test_streamed_data_train_the_same_model_as_data_in_memory(data_dir, tmp_path):
    in_memory = train(data_dir / "cfs2.h5", tmp_path / "a.keras", training_config(epochs=2))
    streamed = train(data_dir / "cfs2.h5", tmp_path / "b.keras", training_config(epochs=2, memory_limit_mb=0))
    assert in_memory.card.metadata["metrics"] == streamed.card.metadata["metrics"]


def test_interrupted_training_keeps_the_best_weights_so_far(data_dir, tmp_path):
    def interrupt_after_second_epoch(report):
        if report.epoch == 2:
            raise KeyboardInterrupt

    config = training_config(epochs=10)
    result = train(data_dir / "cfs2.h5", tmp_path / "m.keras", config, on_epoch=interrupt_after_second_epoch)
    _, card = models.load_model(result.model_path)
    assert card.training.interrupted and card.training.epochs_run == 2


def _weights(path):
    return models.load_model(path)[0].get_weights()


def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(data_dir, tmp_path):
    """Killed after epoch 3 (the checkpoint holds 2 epochs), resumed: same weights, optimizer and counters.

    reduce_lr_patience 1 and patience 3 make the learning-rate and early-stopping counters matter."""

    def interrupt_in_third_epoch(report):
        if report.epoch == 3:
            raise KeyboardInterrupt

    config = training_config(epochs=7, reduce_lr_patience=1, patience=3, learning_rate=0.1)
    whole = train(data_dir / "cfs2.h5", tmp_path / "whole.keras", config)
    stopped = train(data_dir / "cfs2.h5", tmp_path / "m.keras", config, on_epoch=interrupt_in_third_epoch)
    assert stopped.card.training.interrupted and (tmp_path / "m.keras.parts" / "state.npz").exists()
    resumed = train(data_dir / "cfs2.h5", tmp_path / "m.keras", config, resume=True)
    assert resumed.card.training.resumed_at_epoch == 2
    assert not (tmp_path / "m.keras.parts").exists() and not (tmp_path / "whole.keras.parts").exists()
    for name in ("epochs_run", "best_epoch"):
        assert getattr(resumed.card.training, name) == getattr(whole.card.training, name)
    learning_rates = {row["learning_rate"] for row in whole.card.training.history}
    assert whole.card.training.epochs_run < 7 or len(learning_rates) > 1  # the counters were exercised
    for mine, theirs in zip(_weights(resumed.model_path), _weights(whole.model_path), strict=True):
        assert np.array_equal(mine, theirs)
    assert resumed.card.metadata["metrics"] == whole.card.metadata["metrics"]


def test_resume_refuses_the_checkpoint_of_another_run_and_starts_afresh_without_one(data_dir, tmp_path):
    def interrupt(report):
        raise KeyboardInterrupt

    train(data_dir / "cfs2.h5", tmp_path / "m.keras", training_config(epochs=3, seed=0), on_epoch=interrupt)
    with pytest.raises(DataError, match="belongs to a training run with other data, config"):
        train(data_dir / "cfs2.h5", tmp_path / "m.keras", training_config(epochs=3, seed=1), resume=True)
    fresh = train(data_dir / "cfs2.h5", tmp_path / "n.keras", training_config(epochs=1), resume=True)
    assert fresh.card.training.resumed_at_epoch is None and fresh.card.training.epochs_run == 1


def test_split_is_deterministic_disjoint_and_complete():
    split = split_indices(103, 0.2, 0.1, seed=5)
    again = split_indices(103, 0.2, 0.1, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(vars(split).values(), vars(again).values(), strict=True))
    joined = np.concatenate([split.train, split.validation, split.test])
    assert sorted(joined) == list(range(103))
    assert (len(split.validation), len(split.test)) == (21, 10)
    assert not np.array_equal(split_indices(103, 0.2, 0.1, seed=6).test, split.test)
    with pytest.raises(DataError, match="too few"):
        split_indices(4, 0.2, 0.1, seed=0)


def test_evaluate_scores_exactly_the_recorded_hold_out(trained, data_dir, tmp_path):
    result = evaluate(trained.model_path, data_dir / "cfs2.h5", tmp_path / "report", training_config())
    cnn = result.cnn
    recorded = trained.card.hold_out
    assert result.scope == "recorded hold-out" and result.labelled
    assert cnn.samples == len(trained.card.hold_out_indices)
    assert cnn.r2 == pytest.approx(recorded.r2, abs=1e-6)
    assert cnn.mse == pytest.approx(recorded.mse, rel=1e-5)
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert written["cnn"]["r2"] == pytest.approx(cnn.r2)
    assert EvaluationReport.from_json((tmp_path / "report" / "metrics.json").read_text()) == result
    report = (tmp_path / "report" / "report.md").read_text()
    for figure in ("parity.png", "residuals.png", "image-r2.png", "images.png", "encodings.png", "intensities.png"):
        assert f"({figure})" in report
        assert (tmp_path / "report" / figure).stat().st_size > 1000
    assert result.decoded_count == 6
    # Re-simulating the true encoding cannot reproduce the image exactly (stochastic engine) but resembles it.
    assert 0.0 < result.decoded["re-simulated truth"].image_r2.median < 1.0


def test_evaluate_on_corrupted_detector_images(trained, data_dir, tmp_path):
    config = load_config(
        "train-demo", ["evaluation.resimulated=4", "evaluation.corrupted_flux=3.0"], root=TrainingConfig
    )
    result = evaluate(trained.model_path, data_dir / "cfs2.h5", tmp_path / "report", config)
    corrupted = result.corrupted
    assert corrupted.cnn.samples == 4 and np.isfinite(corrupted.classical.r2)
    assert "## On corrupted detector images" in (tmp_path / "report" / "report.md").read_text()


def test_evaluate_with_a_model_of_another_cfs(trained, data_dir, tmp_path):
    other = train(data_dir / "cfs3.h5", tmp_path / "cfs3.keras", training_config(epochs=1, validation_split=0.25))
    result = evaluate(
        trained.model_path, data_dir / "cfs2.h5", tmp_path / "report", training_config(), compare=[other.model_path]
    )
    assert any("CFS3 model" in name for name in result.decoded)
    with pytest.raises(DataError, match="CFS3 encodings"):
        evaluate(other.model_path, data_dir / "cfs2.h5", tmp_path / "report2", training_config())
    assert not (tmp_path / "report2").exists()


def test_metrics_equal_hand_computed_values():
    truth = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    predicted = np.array([[1.0, 0.5], [2.5, 0.0], [2.5, 0.0]])
    # column 0: residual 0 + 0.25 + 0.25 = 0.5, total 2 -> R2 0.75; column 1 constant truth, wrong -> 0
    np.testing.assert_allclose(metrics.r2_per_component(truth, predicted), [0.75, 0.0])
    scores = metrics.regression_metrics(truth, predicted, ["a", "b"])
    assert scores["r2"] == pytest.approx(0.375)
    assert scores["mse"] == pytest.approx(0.75 / 6)
    assert scores["mae"] == pytest.approx(1.5 / 6)
    assert scores["per_component"]["a"]["mean_residual"] == pytest.approx(0.0)
    reference = np.array([[0.0, 2.0], [4.0, 2.0]])  # mean 2, total sum of squares 8
    assert metrics.image_r2(reference, reference + 1.0) == pytest.approx(1 - 4 / 8)
    assert metrics.image_mse(reference, reference + 1.0) == pytest.approx(1.0)


def test_warren_cowley_inversion_is_exact_on_the_all_lots_image():
    # n_lots: all is exactly the Fejer-weighted Warren-Cowley sum of the lattice's periodic alpha; on a
    # 32-site lattice with a 64-point grid (period 32) nothing aliases, so the inversion recovers alpha.
    lattice, state = engine.random_lattice(32, 0.5, engine.seed_state(3))
    vectors = cfs_vectors(3)
    couplings = np.array([0.4, 0.0, -0.3, 0.2, 0.0, 0.0, 0.0, 0.1])
    lattice, _, _ = engine.metropolis_sweeps(lattice, vectors, couplings, 50, state)
    image = engine.all_lots_intensity(lattice, 16, 64, 1.0)
    inversion = WarrenCowleyInversion(vectors, 64, 1.0, 16)
    estimate = inversion(image * 123.0)  # any scale
    np.testing.assert_allclose(estimate, engine.measure_alpha(lattice, vectors), atol=1e-9)


@pytest.mark.parametrize("cfs", [2, 3, 4])
def test_transposed_lattice_has_transposed_image_and_permuted_alpha(cfs):
    # The augmentation's oracle: a transposed training image with permuted labels is an exact sample.
    lattice, state = engine.random_lattice(16, 0.5, engine.seed_state(cfs))
    vectors = cfs_vectors(cfs)
    couplings = np.linspace(-0.4, 0.3, len(vectors))
    lattice, state, _ = engine.metropolis_sweeps(lattice, vectors, couplings, 20, state)
    permutation = transpose_permutation(vectors)
    np.testing.assert_allclose(
        engine.measure_alpha(lattice.T, vectors), engine.measure_alpha(lattice, vectors)[permutation], atol=1e-12
    )
    np.testing.assert_allclose(
        engine.all_lots_intensity(lattice.T, 8, 32, 1.0), engine.all_lots_intensity(lattice, 8, 32, 1.0).T, atol=1e-12
    )


def test_inversion_range_is_checked():
    with pytest.raises(DataError, match="larger than this grid allows"):
        WarrenCowleyInversion(cfs_vectors(2), 16, 1.0, 8, max_range=8)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "{d}/missing.h5", "-o", "{t}/m.keras"], "no such file"),
        (["train", "{d}/cfs2.h5", "-o", "{t}/m.h5"], "must end in .keras"),
        (["train", "{d}/cfs2.h5", "-o", "{t}/m.keras", "--val-split", "1.5"], "validation_split"),
        (["train", "{d}/cfs2.h5", "-o", "{t}/m.keras", "--arch", "huge"], "architecture"),
        (["train", "{d}/cfs3.h5", "-o", "{t}/m.keras", "--val-split", "0.02", "--test-split", "0.02"], "too few"),
        (["train", "{t}/garbage.h5", "-o", "{t}/m.keras"], "not a readable HDF5"),
        (["evaluate", "{t}/garbage.h5", "{d}/cfs2.h5", "-o", "{t}/r"], "not a cfsx model"),
        (["evaluate", "{t}/cfs3.keras", "{d}/cfs2.h5", "-o", "{t}/r"], "CFS3 encodings"),  # CFS2 data lack vectors
        (["evaluate", "{d}/model.keras", "{t}/wide.h5", "-o", "{t}/r"], "32-point images"),
        (["train", "{t}/nan.h5", "-o", "{t}/m.keras", "--epochs", "1"], "NaN"),
        (["train", "{t}/nan.h5", "-o", "{t}/m.keras", "--epochs", "1", "--set", "fit.memory_limit_mb=0"], "NaN"),
    ],
)
def test_bad_input_gives_one_clear_line(args, message, trained, data_dir, tmp_path):
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5 at all")
    metadata = read_metadata(data_dir / "model.keras")
    metadata.update(cfs=3, vectors=cfs_vectors(3).tolist())
    models.write_model_file(models.build_model("small", 32, 8), metadata, tmp_path / "cfs3.keras")
    with h5py.File(data_dir / "cfs2.h5") as source, h5py.File(tmp_path / "wide.h5", "w") as wide:
        wide.attrs.update(source.attrs)
        config = source.attrs["config"].replace("image_size: 32", "image_size: 16")
        wide.attrs["config"] = config
        wide["images"] = source["images"][:20, ::2, ::2]
        wide["encodings/achieved"] = source["encodings/achieved"][:20]
    with h5py.File(data_dir / "cfs2.h5") as source, h5py.File(tmp_path / "nan.h5", "w") as broken:
        broken.attrs.update(source.attrs)
        images = source["images"][:]
        images[3, 0, 0] = np.nan
        broken["images"] = images
        broken["encodings/achieved"] = source["encodings/achieved"][:]
    args = [a.format(d=data_dir, t=tmp_path) for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert message in result.output
    assert not (tmp_path / "m.keras").exists() and not (tmp_path / "r").exists()
    assert not list(tmp_path.glob(".*tmp*"))


def test_sub_encoding_columns_are_the_smaller_cfs_vectors():
    from cfsx.physics.encoding import sub_encoding

    for small, large in ((2, 3), (2, 4), (3, 4)):
        columns = sub_encoding(large, small)
        assert cfs_vectors(large)[columns].tolist() == cfs_vectors(small).tolist()
    with pytest.raises(Exception, match="cannot label a CFS4 model"):
        sub_encoding(2, 4)


def test_a_cfs2_model_trains_and_is_scored_on_cfs3_data(data_dir, tmp_path):
    """model.cfs: a CFS3 dataset labels a CFS2 model through its sub-encoding; evaluate reads it the same way."""
    config = load_config("train-demo", ["model.cfs=2", "fit.epochs=1", "model.decode_config=demo"],
                         root=TrainingConfig)  # fmt: skip
    result = train(data_dir / "cfs3.h5", tmp_path / "two.keras", config)
    model, card = models.load_model(result.model_path)
    assert card.cfs == 2 and model.output_shape[-1] == 3
    assert card.decoding_config == load_config("demo").to_yaml()
    report = evaluate(result.model_path, data_dir / "cfs3.h5", tmp_path / "report", training_config())
    assert report.cnn.samples == len(card.hold_out_indices)
    summary = summarise_data(data_dir / "cfs3.h5", cfs=2)
    with open_dataset(data_dir / "cfs3.h5") as file:
        expected = file.labels[()][:, [0, 2, 3]]  # (0,1), (1,0), (1,1) among CFS3's vectors
        for limit in (0, 100):  # streamed and in memory
            labels = SampleReader(file, limit, summary.columns).read(np.arange(7))[1]
            np.testing.assert_array_equal(labels, expected[:7])


def test_copies_of_a_sample_fall_in_the_same_part_of_the_split():
    from cfsx.learning.training import split_by_seed

    seeds = np.array([[s, 0] for s in range(50)] * 2, dtype=np.uint64)  # every sample twice (clean, corrupted)
    split = split_by_seed(seeds, 0.2, 0.2, seed=3)
    parts = [set(seeds[indices, 0].tolist()) for indices in (split.train, split.validation, split.test)]
    assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2]) and parts[1].isdisjoint(parts[2])
    assert len(split.test) == 20 and sorted(np.concatenate([split.train, split.validation, split.test])) == list(
        range(100)
    )
    unique = np.array([[s, 0] for s in range(50)], dtype=np.uint64)
    np.testing.assert_array_equal(split_by_seed(unique, 0.2, 0.2, 3).test, split_indices(50, 0.2, 0.2, 3).test)


def test_training_on_several_lot_sizes_generalises_to_an_unseen_lot_size(tmp_path):
    """The reason the general models learn from a family of settings: a small CNN trained on lot sizes 3, 8
    and 24 reads images of lot size 4 (never seen) better than the same CNN trained as long on lot size 24 only
    (whose Fejer window it then misreads as weaker order)."""
    from cfsx.learning.models import predict

    def data(name: str, lot_size: int, samples: int, seed: int) -> Path:
        config = load_config("general-n32-l16-k8", ["encoding.cfs=2", "lattice.size=24", "diffraction.image_size=16",
                                                    "diffraction.n_lots=all", f"diffraction.lot_size={lot_size}",
                                                    f"run.samples={samples}", f"run.seed={seed}"])  # fmt: skip
        simulate(config, tmp_path / f"{name}.h5", workers=1)
        return tmp_path / f"{name}.h5"

    several = [data(f"l{lot}", lot, 160, seed) for lot, seed in ((3, 1), (8, 2), (24, 3))]
    single = data("single", 24, 480, 4)
    unseen = data("unseen", 4, 120, 5)
    config = training_config(epochs=12, batch_size=32)  # also holds with fit.seed 1 and 2
    scores = {}
    for name, files in (("several", several), ("single", [single])):
        model = models.load_model(train(files, tmp_path / f"{name}.keras", config).model_path)[0]
        with h5py.File(unseen) as file:
            predicted = predict(model, file["images"][()])
            scores[name] = float(np.abs(predicted - file["encodings/achieved"][()]).mean())
    assert scores["several"] < 0.8 * scores["single"], scores


def test_the_hybrid_model_starts_as_the_least_squares_and_loads_in_safe_mode(tmp_path, small_run):
    """hybrid = the Warren-Cowley least squares (a fixed layer, no lot window) + a correction initialised to zero."""
    from cfsx.physics.inversion import NO_WINDOW

    simulate(small_run(3, 6), tmp_path / "d.h5", workers=1)
    with h5py.File(tmp_path / "d.h5") as file:
        images = file["images"][()]
    model = models.build_model("hybrid", 32, 8, cfs_vectors(3).tolist(), 1.0)
    classical = WarrenCowleyInversion(cfs_vectors(3), 32, 1.0, NO_WINDOW)(images)
    np.testing.assert_allclose(model.predict_on_batch(images), classical, atol=1e-5)
    model.save(tmp_path / "h.keras")
    again = keras.models.load_model(tmp_path / "h.keras", safe_mode=True, compile=False)
    np.testing.assert_array_equal(again.predict_on_batch(images), model.predict_on_batch(images))
    assert not any(layer.trainable_weights for layer in model.layers if layer.name == "least_squares")
