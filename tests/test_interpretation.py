"""cfsx interpret: recovered encodings, decoded images against the intrinsic floor, the results' schema,
figures, refinement, uncertainty, the knowledge store and fine-tuning, and bad input."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import jsonschema
import numpy as np
import pytest
from conftest import corrected_file
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.config import CorrectionConfig, InterpretationConfig, TrainingConfig, load_config
from cfsx.interpretation import SCHEMA_PATH, InterpretationOutput, interpret
from cfsx.interpretation.estimates import ImageFacts, choose_final, least_squares
from cfsx.interpretation.refinement import ExpectedIntensity, scaled_r2
from cfsx.learning import models
from cfsx.learning.data import summarise_data
from cfsx.learning.evaluation import hold_out_indices
from cfsx.learning.model_card import read_model_card
from cfsx.learning.models import predict_encodings
from cfsx.learning.training import train
from cfsx.physics import engine
from cfsx.physics.encoding import cfs_vectors, transpose_permutation
from cfsx.physics.inversion import NO_WINDOW
from cfsx.physics.metrics import image_r2
from cfsx.simulation import decode, sample_seeds, simulate
from cfsx.simulation.detector import Detector

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_run):
    """A test-sized CFS2 model, and images it never saw (another seed)."""
    folder = tmp_path_factory.mktemp("interpret")
    simulate(small_run(2, 240), folder / "train.h5", workers=1)
    simulate(small_run(2, 12, seed=99), folder / "unseen.h5", workers=1)
    config = load_config("train-demo", root=TrainingConfig, **{"fit.epochs": 12})
    train(folder / "train.h5", folder / "model.keras", config)
    return folder


def interpretation_config(**flags) -> InterpretationConfig:
    return load_config("interpret", root=InterpretationConfig, **flags)


@pytest.fixture(scope="module")
def interpreted(setup):
    # decoded on the model's own lattice, as the observations were simulated: their floors are comparable
    config = load_config("interpret", ["decode.lattice_size=null"], root=InterpretationConfig,
                         **{"refine.enabled": True, "refine.decoded_iterations": 4})  # fmt: skip
    return interpret(setup / "model.keras", [str(setup / "unseen.h5")], setup / "out", config, CorrectionConfig())


def test_unseen_encodings_are_recovered_and_decoded_near_the_intrinsic_floor(setup, interpreted):
    document = interpreted.document
    # A test-sized model (240 samples, 12 epochs) reached R2 0.991 on these 12 unseen images (measured once;
    # the decoded CNN encodings scored median image R2 0.509 against an intrinsic floor of 0.545).
    assert document["summary"]["encoding"]["cnn"]["r2"] > 0.95
    with h5py.File(setup / "unseen.h5") as file:
        observed, truth = file["images"][()], file["encodings/achieved"][()]
    with h5py.File(setup / "out" / "results.h5") as file:
        final_r2 = file["decoded/image_r2"][()]  # the final answer's decodes
        final = file["encodings/final"][()]
        sources = [source.decode() for source in file["final_source"][()]]
    np.testing.assert_allclose(final, [list(r["encoding"].values()) for r in document["images"]], atol=1e-6)
    # The floor: the true encodings decoded with the same seeds, scored the same way.
    simulation = load_config("demo", ["lattice.size=20", "diffraction.lot_size=10", "diffraction.image_size=32"])
    floor_images = decode(simulation, truth, 0, seeds=sample_seeds(0, 1) * len(truth)).images
    power = (floor_images**2).sum(axis=(1, 2))
    scale = (observed * floor_images).sum(axis=(1, 2)) / power
    floor = np.median(image_r2(observed, floor_images * scale[:, None, None]))
    cnn_r2 = np.median([r["estimates"]["cnn"]["decoded_image_r2"]["mean"] for r in document["images"]])
    assert cnn_r2 > floor - 0.1, (cnn_r2, floor)
    assert np.median(final_r2) > floor - 0.1
    # The final answer follows the stated rule: the least squares wherever defined (simulated images: all).
    assert sources == ["least_squares"] * len(truth) == [r["final_source"] for r in document["images"]]
    assert document["summary"]["final_sources"] == {"cnn": 0, "least_squares": len(truth), "refined": 0}
    # A simulated dataset tells its lot size (10) and its images are exact all-origins averages: the least
    # squares with that window is the oracle, the achieved alpha itself (float32 images: to 1e-5).
    np.testing.assert_allclose(final, truth, atol=1e-5)
    no_window = least_squares(observed.astype(np.float64), np.array([[0, 1], [1, 0], [1, 1]]), 1.0)
    assert np.abs(no_window - truth).max() > 0.01  # what the lot window is worth at L = 10


def test_final_answer_rule_on_constructed_images():
    """A Warren-Cowley image gives its alpha back by least squares and the rule takes it; an image with a
    residual Bragg peak still takes the least squares (the rule, measured on the benchmark); an image with no
    diffuse pattern (fitted g(0) <= 0) leaves the least squares undefined and takes the CNN."""
    vectors = cfs_vectors(2)
    alpha = np.array([-0.12, 0.05, 0.08, -0.03, 0.02, 0.04, 0.01, -0.02])[: len(vectors)]
    expected = ExpectedIntensity(vectors, 64, 1.0, NO_WINDOW, 0.5)(alpha)
    peaked = expected.copy()
    peaked[32, 32] += 50 * expected.mean()
    images = np.stack([expected, peaked, -expected])
    fitted = least_squares(images, vectors, 1.0)
    np.testing.assert_allclose(fitted[0], alpha, atol=1e-9)  # the oracle: exact on an exact image
    assert np.isfinite(fitted[1]).all() and np.isnan(fitted[2]).all()
    cnn = np.full((3, len(vectors)), 0.3)
    simulated = [ImageFacts(corrected=False)] * 3
    chosen = choose_final({"cnn": cnn, "least_squares": fitted}, simulated, "hybrid")
    assert chosen.final_source == ["least_squares", "least_squares", "cnn"]
    np.testing.assert_allclose(chosen.final, [fitted[0], fitted[1], cnn[2]])
    # corrected images and a hybrid: the blend where correct masked no Bragg peak, the CNN where it did
    facts = [ImageFacts(corrected=True), ImageFacts(corrected=True, bragg_share=0.01), ImageFacts(corrected=True)]
    by_hybrid = choose_final({"cnn": cnn, "least_squares": fitted}, facts, "hybrid")
    assert by_hybrid.final_source == ["blend", "cnn", "cnn"]
    np.testing.assert_allclose(by_hybrid.final[0], (cnn[0] + fitted[0]) / 2)
    np.testing.assert_allclose(by_hybrid.final[1:], cnn[1:])
    assert np.isnan(by_hybrid.by_method["blend"][2]).all()  # undefined where the least squares is
    # any other architecture: the least squares wherever it is defined
    assert choose_final({"cnn": cnn, "least_squares": fitted}, facts, "cnn").final_source == [
        "least_squares",
        "least_squares",
        "cnn",
    ]


def test_the_reported_floor_is_two_decodes_of_one_encoding_against_each_other(setup, interpreted):
    with h5py.File(setup / "out" / "results.h5") as file:
        decoded = file["decoded/images"][()].astype(np.float64)  # (S, R, M, M)
        floor = file["decoded/image_r2_floor"][()]
        observed, truth = file["observed"][()], file["truth"][()]
    replicates = decoded.shape[1]
    assert floor.shape == (len(decoded), replicates * (replicates - 1) // 2)
    first = decoded[:, 0]
    scale = (first * decoded[:, 1]).sum(axis=(1, 2)) / (decoded[:, 1] ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(floor[:, 0], image_r2(first, decoded[:, 1] * scale[:, None, None]), atol=1e-9)
    reported = [record["decoded"]["image_r2_floor"]["mean"] for record in interpreted.document["images"]]
    np.testing.assert_allclose(reported, floor.mean(axis=1), atol=1e-9)
    # The observations are themselves simulations of their true encodings: their image R2 against a decode
    # of the truth is the same kind of number, so the medians agree within the spread of finite lattices.
    simulation = load_config("demo", ["lattice.size=20", "diffraction.lot_size=10", "diffraction.image_size=32"])
    truth_images = decode(simulation, truth, 0, seeds=sample_seeds(5, 1) * len(truth)).images
    scale = (observed * truth_images).sum(axis=(1, 2)) / (truth_images**2).sum(axis=(1, 2))
    intrinsic = np.median(image_r2(observed, truth_images * scale[:, None, None]))
    assert abs(np.median(floor) - intrinsic) < 0.15, (np.median(floor), intrinsic)


def test_a_field_of_the_record_reaches_results_json_results_h5_and_the_schema_by_itself(setup, interpreted):
    """docs/architecture.md "A results field": ``facts`` was added to Interpretation (and filled where interpret
    makes the records) and nothing else; results.json, results.h5 and the schema carry it by the generic rule."""
    from cfsx.interpretation.results import generic_fields, read_results_h5, results_schema

    assert "facts" in [name for name, _ in generic_fields()]
    records = interpreted.interpretations
    for record, plain in zip(records, interpreted.document["images"], strict=True):
        assert plain["facts"]["corrected"] is False and plain["facts"]["bragg_share"] == 0.0  # simulated images
        assert plain["facts"]["counts"] is None and record.facts.counts == np.inf  # JSON has no infinity
        assert plain["facts"]["long_range_order"] == pytest.approx(record.facts.long_range_order)
    read = read_results_h5(setup / "out" / "results.h5")
    assert [item.facts for item in read] == [item.facts for item in records]
    facts, nothing = results_schema()["$defs"]["record"]["properties"]["facts"]["anyOf"]  # ImageFacts | None
    assert nothing == {"type": "null"} and facts["properties"]["bragg_share"] == {"type": ["number", "null"]}
    assert facts["properties"]["corrected"] == {"type": "boolean"} and "corrected" in facts["required"]
    tool = Path(__file__).resolve().parents[1] / "tools" / "results_schema.py"
    checked = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr  # the shipped schema file is the generated one


def test_results_follow_the_schema_and_figures_are_written(setup, interpreted):
    document = json.loads((setup / "out" / "results.json").read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    assert len(document["images"]) == 12
    for record in document["images"]:
        figure = setup / "out" / record["figure"]
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert record["truth"] is not None
        assert set(record["encoding"]) == {"alpha(0,1)", "alpha(1,0)", "alpha(1,1)"}


def test_refinement_never_makes_the_decoded_misfit_worse(interpreted):
    for record in interpreted.document["images"]:
        for start in ("from_cnn", "from_zero"):
            stages = record["refinement"][start]
            assert stages["refined"]["decoded_r2"] >= stages["start"]["decoded_r2"]
            assert np.all(np.diff(stages["history"]) >= 0)


def test_expected_intensity_fit_recovers_an_exact_warren_cowley_image():
    vectors = cfs_vectors(3)
    truth = np.array([0.3, -0.1, -0.2, 0.15, 0.05, 0.1, -0.05, 0.02])
    alpha = np.zeros((7, 7))
    alpha[3, 3] = 1.0
    for (dx, dy), value in zip(vectors, truth, strict=True):
        alpha[3 + dx, 3 + dy] = alpha[3 - dx, 3 - dy] = value
    image = 37.0 * engine.warren_cowley_intensity(alpha, 0.5, 32, 1.0, lot_size=12)
    expected = ExpectedIntensity(vectors, 32, 1.0, 12, 0.5)
    fitted = expected.fit(image, np.zeros(8), -np.ones(8), np.ones(8), iterations=500)
    np.testing.assert_allclose(fitted, truth, atol=1e-4)
    r2, scale = scaled_r2(image, expected(fitted))
    assert r2 > 1 - 1e-8 and scale == pytest.approx(37.0, rel=1e-4)


def test_transpose_averaged_encoding_of_a_symmetric_image_is_symmetric():
    model = models.build_model("small", 32, 8)
    rng = np.random.default_rng(0)
    image = rng.random((32, 32)) + 0.5
    symmetric = (image + image.T)[None]
    permutation = transpose_permutation(cfs_vectors(3))
    encoding, difference = predict_encodings(model, symmetric, permutation, 8)
    np.testing.assert_allclose(encoding[0], encoding[0][permutation], atol=1e-6)
    plain, none = predict_encodings(model, image[None], None, 8)
    assert np.all(none == 0) and not np.allclose(plain, predict_encodings(model, image[None], permutation, 8)[0])
    assert np.all(difference >= 0)


def test_same_seed_gives_the_same_results_whatever_the_workers(setup, tmp_path):
    config = interpretation_config(**{"output.figures": False, "decode.replicates": 2})
    runs = [
        interpret(
            setup / "model.keras", [str(setup / "unseen.h5")], tmp_path / f"w{w}", config, CorrectionConfig(), workers=w
        )  # fmt: skip
        for w in (1, 2)
    ]
    with h5py.File(runs[0].output_dir / "results.h5") as one, h5py.File(runs[1].output_dir / "results.h5") as two:
        for name in ("decoded/images", "decoded/lattices", "encodings/final", "decoded/image_r2"):
            assert np.array_equal(one[name][()], two[name][()]), name


def test_a_raw_detector_image_is_corrected_and_interpreted(setup, tmp_path):
    with h5py.File(setup / "unseen.h5") as file:
        lattice = file["lattices"][0]
    detector = Detector(size=128, pixels_per_rlu=48, beam_centre=(70, 60))
    raw = detector.corrupt(detector.render(lattice, 10), {"scale", "bragg", "gaps"}, np.random.default_rng(0))
    np.save(tmp_path / "detector.npy", raw)
    result = runner.invoke(
        app,
        ["interpret", "--model", str(setup / "model.keras"), str(tmp_path / "detector.npy"),
         "-o", str(tmp_path / "raw"), "--origin", "70,60", "--pixels-per-rlu", "48,48",
         "--correct-set", "bragg.method=lattice", "--correct-set", "mask.zeros=values", "--workers", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "raw" / "results.json").read_text())
    assert document["images"][0]["decoded"]["image_r2"]["mean"] > 0.3
    with h5py.File(tmp_path / "raw" / "results.h5") as file:
        assert file["masks"][0].max() >= 1  # the gap and the peaks were filled


def test_store_records_interpretations_and_fine_tuning_uses_it(setup, tmp_path):
    store = tmp_path / "store.h5"
    config = interpretation_config(**{"output.figures": False, "decode.replicates": 2})
    for run in range(2):
        output = InterpretationOutput(tmp_path / "out", record=store)
        result = interpret(setup / "model.keras", [str(setup / "unseen.h5")], output, config, CorrectionConfig())
        assert result.document["store_size"] == 12 * (run + 1)
    summary = summarise_data(store)  # a store is a training dataset
    assert summary.samples == 24 and summary.cfs == 2
    with h5py.File(store) as file, h5py.File(tmp_path / "out" / "results.h5") as results:
        np.testing.assert_allclose(file["encodings/achieved"][12:], results["decoded/achieved"][:, 0])
        assert file["sources"].asstr()[0].endswith("/images[0]")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file.attrs.update(format="cfsx-dataset", format_version=1, kind="store", cfs=3, config="x")
        file["images"] = np.ones((1, 32, 32), np.float32)
    refused = runner.invoke(app, ["interpret", "--model", str(setup / "model.keras"), str(setup / "unseen.h5"), "-o",
                                  str(tmp_path / "refused"), "--record", str(other)])  # fmt: skip
    assert refused.exit_code != 0 and "holds other data" in refused.output and not (tmp_path / "refused").exists()
    config = load_config("train-demo", root=TrainingConfig, **{"fit.epochs": 2})
    tuned = train([setup / "train.h5", store], tmp_path / "tuned.keras", config, init=setup / "model.keras")
    training = tuned.card.training
    assert training.initialised_from == str(setup / "model.keras")
    assert [part.samples for part in training.data_files] == [240, 24]
    # Started from a trained model with small steps, the hold-out stays good after two epochs.
    assert tuned.card.hold_out.r2 > 0.7
    held_out = hold_out_indices(read_model_card(tuned.model_path), summarise_data(setup / "train.h5"))
    test = tuned.card.hold_out_indices
    assert np.array_equal(held_out, test[test < 240])


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda folder: folder / "missing.npy", "no such image file"),
        (lambda folder: _save(folder / "nan.npy", np.full((40, 40), np.nan)), "no valid pixel"),
        (lambda folder: _save(folder / "text.tif", b"not an image"), "cannot read"),
        (lambda folder: _wrong_grid_dataset(folder), "the model needs"),
        (lambda folder: _save(folder / "flat.npy", np.ones((40, 40))), "no contrast"),
    ],
)
def test_bad_input_gives_one_clear_line(setup, tmp_path, make_input, message):
    path = make_input(tmp_path)
    result = runner.invoke(
        app, ["interpret", "--model", str(setup / "model.keras"), str(path), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_a_file_that_is_not_a_model_is_refused(setup, tmp_path):
    (tmp_path / "fake.keras").write_text("nothing")
    result = runner.invoke(
        app, ["interpret", "--model", str(tmp_path / "fake.keras"), str(setup / "unseen.h5"), "-o", "x"]
    )
    assert result.exit_code != 0 and "not a cfsx model" in result.output


def _save(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    return path


def _wrong_grid_dataset(folder):
    with h5py.File(folder / "wrong.h5", "w") as file:
        file.attrs.update(format="cfsx-dataset", format_version=1, kind="corrected", h_max=1.0)
        file["images"] = np.ones((2, 16, 16), np.float32)
    return folder / "wrong.h5"


def test_interpret_and_evaluate_read_a_file_of_cfsx_correct(setup, tmp_path):
    with h5py.File(setup / "unseen.h5") as file:
        corrected_file(file["images"][:3], tmp_path, 77.0)
    result = interpret(setup / "model.keras", [str(tmp_path / "corrected.h5")], tmp_path / "out",
                       interpretation_config(**{"output.figures": False}), CorrectionConfig())  # fmt: skip
    assert len(result.document["images"]) == 3 and result.document["images"][0]["truth"] is None
    evaluated = runner.invoke(
        app, ["evaluate", str(setup / "model.keras"), str(tmp_path / "corrected.h5"), "-o", str(tmp_path / "report"),
              "--config", "train-demo", "--workers", "1"],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["scope"] == "unlabelled file" and metrics["decoded_count"] == 3 and metrics["cnn"] is None
    # Images corrected from clean simulated ones are explained by their decoded CNN encodings.
    assert metrics["decoded"]["decoded CNN"]["image_r2"]["median"] > 0.3


def test_cnn_only_interpretation_skips_decoding(setup, tmp_path):
    config = interpretation_config(**{"decode.replicates": 0})
    result = interpret(setup / "model.keras", [str(setup / "unseen.h5")], tmp_path / "cnn", config, CorrectionConfig())
    jsonschema.validate(result.document, json.loads(SCHEMA_PATH.read_text()))
    record = result.document["images"][0]
    assert record["decoded"] is None and record["uncertainty"]["replicates"] is None
    assert (tmp_path / "cnn" / record["figure"]).exists()
    with h5py.File(tmp_path / "cnn" / "results.h5") as file:
        assert "decoded" not in file and file["encodings/cnn"].shape == (12, 3)
    refused = runner.invoke(app, ["interpret", "--model", str(setup / "model.keras"), str(setup / "unseen.h5"), "-o",
                                  str(tmp_path / "x"), "--replicates", "0", "--refine"])  # fmt: skip
    assert refused.exit_code != 0 and "refinement needs decoding" in refused.output


def test_concatenated_reader_reads_across_files_from_memory_and_from_disk(setup, tmp_path):
    from cfsx.learning.training import open_reader, summarise_datasets

    summary = summarise_datasets([setup / "unseen.h5", setup / "train.h5"])
    with h5py.File(setup / "unseen.h5") as one, h5py.File(setup / "train.h5") as two:
        images = np.concatenate([one["images"][()], two["images"][()]])
        labels = np.concatenate([one["encodings/achieved"][()], two["encodings/achieved"][()]])
    wanted = np.array([0, 5, 11, 12, 100, 251])
    for memory_limit_mb in (1024, 0):  # 0: streamed from the files
        with open_reader(summary, memory_limit_mb) as reader:
            got_images, got_labels = reader.read(wanted)
            np.testing.assert_array_equal(got_images, images[wanted])
            np.testing.assert_array_equal(got_labels, labels[wanted])
            np.testing.assert_array_equal(reader.read(np.array([20, 30]))[1], labels[[20, 30]])


def test_info_describes_a_model(setup):
    result = runner.invoke(app, ["info", str(setup / "model.keras")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "cfsx model, CFS2 (D = 3)" in text and "train.h5 (240 samples)" in text
    assert re.search(r"hold-out \(\d+ samples\): R2 0\.\d{4}", text)


def test_json_records_of_train_evaluate_and_interpret(setup, tmp_path):
    """--json: one JSON object on stdout for each command, the human text (tables included) on stderr."""

    def run(*arguments: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "cfsx", *arguments, "--json"], capture_output=True, text=True,
                                cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    with h5py.File(setup / "unseen.h5") as file:
        np.save(tmp_path / "raw.npy", np.kron(file["images"][0], np.ones((2, 2))))
    corrected = run("correct", str(tmp_path / "raw.npy"), "-o", str(tmp_path / "corrected.h5"),
                    "--set", "output.image_size=32")  # fmt: skip
    assert len(corrected["images"]) == 1 and corrected["images"][0]["provenance"][0]["step"] == "read"
    assert sum(corrected["images"][0]["cells"].values()) == 32 * 32
    trained = run("train", str(setup / "train.h5"), "-o", str(tmp_path / "one.keras"), "--epochs", "1")
    assert trained["model"].endswith("one.keras") and trained["metadata"]["training"]["epochs_run"] == 1
    evaluated = run("evaluate", str(setup / "model.keras"), str(setup / "unseen.h5"), "-o", str(tmp_path / "report"),
                    "--workers", "1", "--resimulated", "2")  # fmt: skip
    assert evaluated["cnn"]["samples"] > 0 and evaluated["format"] == "cfsx-evaluation"
    interpreted = run("interpret", "--model", str(setup / "model.keras"), str(setup / "unseen.h5"),
                      "-o", str(tmp_path / "out"), "--workers", "1", "--replicates", "1", "--no-figures")  # fmt: skip
    assert interpreted["summary"]["images"] == 12 and interpreted == json.loads(
        (tmp_path / "out/results.json").read_text()
    )


def test_interpret_writes_figures_where_asked_or_none(setup, tmp_path):
    base = [
        "interpret",
        "--model",
        str(setup / "model.keras"),
        str(setup / "unseen.h5"),
        "--workers",
        "1",
        "--replicates",
        "1",
    ]
    (tmp_path / "figs").mkdir()
    elsewhere = runner.invoke(app, [*base, "-o", str(tmp_path / "a"), "--figures", str(tmp_path / "figs")])
    assert elsewhere.exit_code == 0, elsewhere.output
    document = json.loads((tmp_path / "a" / "results.json").read_text())
    figures = sorted((tmp_path / "figs").glob("*.png"))
    assert len(figures) == 12 and document["images"][0]["figure"] == str(figures[0])
    assert not (tmp_path / "a" / "figures").exists()
    none = runner.invoke(app, [*base, "-o", str(tmp_path / "b"), "--no-figures"])
    assert none.exit_code == 0 and not (tmp_path / "b" / "figures").exists()
    both = runner.invoke(app, [*base, "-o", str(tmp_path / "c"), "--no-figures", "--figures", str(tmp_path)])
    assert both.exit_code == 2 and "contradict" in both.output
    missing = runner.invoke(app, [*base, "-o", str(tmp_path / "d"), "--figures", str(tmp_path / "nowhere")])
    assert missing.exit_code == 3 and "does not exist" in missing.output and not (tmp_path / "d").exists()


def test_the_old_form_with_the_model_first_still_works_with_a_notice(setup, tmp_path):
    model, images = str(setup / "model.keras"), str(setup / "unseen.h5")
    old = runner.invoke(
        app, ["interpret", model, images, "-o", str(tmp_path / "a"), "--replicates", "0", "--no-figures"]
    )
    assert old.exit_code == 0, old.output
    assert "note: a first argument MODEL.keras is deprecated" in old.output and "use --model" in old.output
    document = json.loads((tmp_path / "a" / "results.json").read_text())
    assert document["model"]["path"] == str(setup / "model.keras") and document["model"]["builtin"] is None
    assert document["model"]["sha256"] == hashlib.sha256((setup / "model.keras").read_bytes()).hexdigest()
    both = runner.invoke(app, ["interpret", model, images, "-o", str(tmp_path / "b"), "--model", model])
    assert both.exit_code == 2 and "give one of them" in both.output
    unknown = runner.invoke(app, ["interpret", str(setup / "unseen.h5"), "-o", str(tmp_path / "c"), "--model", "nope"])
    assert unknown.exit_code == 3 and "no model file or built-in model named 'nope'" in unknown.output
