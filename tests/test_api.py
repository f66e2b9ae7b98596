"""The Python API: ``import cfsx`` stays light, and interpret_images on arrays gives what interpret gives on files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import cfsx
from cfsx.config import CorrectionConfig, InterpretationConfig, TrainingConfig, load_config
from cfsx.errors import DataError
from cfsx.interpretation import interpret, interpret_images
from cfsx.interpretation.results import results_document
from cfsx.learning.training import train
from cfsx.simulation import simulate


def test_import_cfsx_loads_neither_tensorflow_nor_a_matplotlib_backend(tmp_path):
    probe = (
        "import sys, json, matplotlib\n"
        "import cfsx, cfsx.io.plots, cfsx.correction\n"
        "light = {'tensorflow': 'tensorflow' in sys.modules, 'pyplot': 'matplotlib.pyplot' in sys.modules,\n"
        "         'backend': matplotlib.rcParams._get_backend_or_none()}\n"
        "import cfsx.learning.training\n"
        "light['backend after training'] = matplotlib.rcParams._get_backend_or_none()\n"
        "print(json.dumps(light))\n"
    )
    # MPLBACKEND unset: a notebook's backend is whatever the user picks, never one cfsx chooses.
    environment = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    # cwd away from the checkout, whose cfsx/ has no compiled engine: the installed package is imported.
    finished = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=environment, cwd=tmp_path
    )
    assert finished.returncode == 0, finished.stderr
    light = json.loads(finished.stdout.strip().splitlines()[-1])
    assert light == {"tensorflow": False, "pyplot": False, "backend": None, "backend after training": None}


def test_the_public_names_resolve_lazily_and_are_listed():
    names = dir(cfsx)
    for name in ("load_config", "simulate", "train", "load_model", "correct_image", "correct_images",
                 "interpret_images", "evaluate", "Interpretation", "plots"):  # fmt: skip
        assert name in names
        assert getattr(cfsx, name) is not None
    assert cfsx.interpret_images is interpret_images
    with pytest.raises(AttributeError):
        cfsx.no_such_name  # noqa: B018


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory, small_run):
    folder = tmp_path_factory.mktemp("api")
    simulate(small_run(2, 120), folder / "train.h5", workers=1)
    simulate(small_run(2, 4, seed=31), folder / "unseen.h5", workers=1)
    train(folder / "train.h5", folder / "model.keras", load_config("train-demo", root=TrainingConfig,
                                                                    **{"fit.epochs": 2}))  # fmt: skip
    with h5py.File(folder / "unseen.h5") as file:
        images = file["images"][()]
    corrected = folder / "corrected.h5"
    with h5py.File(corrected, "w") as file:  # as cfsx correct writes them: images of unknown origin
        file.attrs.update(format="cfsx-dataset", format_version=1, kind="corrected", h_max=1.0)
        file["images"] = images
    return folder, images


def test_interpret_images_on_arrays_equals_interpret_on_the_same_images_in_a_file(model_and_images):
    folder, images = model_and_images
    config = load_config("interpret", root=InterpretationConfig, **{"decode.replicates": 2, "output.figures": False})
    records = interpret_images(folder / "model.keras", images, config)
    written = interpret(folder / "model.keras", [str(folder / "corrected.h5")], folder / "out", config,
                        CorrectionConfig())  # fmt: skip
    assert len(records) == len(images) == len(written.interpretations)
    for record, from_file in zip(records, written.interpretations, strict=True):
        np.testing.assert_array_equal(record.encoding, from_file.encoding)
        np.testing.assert_array_equal(record.decoded.images, from_file.decoded.images)
        assert record.final_source == from_file.final_source
    # results.json is made from the records: the same images, encodings and estimates.
    again = results_document(records)
    document = json.loads((folder / "out" / "results.json").read_text())
    for ours, theirs in zip(again["images"], document["images"], strict=True):
        assert ours["encoding"] == theirs["encoding"] and ours["estimates"] == theirs["estimates"]
    assert records[0].summary().startswith("image[0] (")


def test_interpret_images_refuses_images_off_the_model_grid_and_without_contrast(model_and_images):
    folder, images = model_and_images
    with pytest.raises(DataError, match="the model takes"):
        interpret_images(folder / "model.keras", np.ones((2, 16, 16)))
    flat = images.copy()
    flat[1] = 3.0
    with pytest.raises(DataError, match=r"image\[1\] has NaN, inf, no positive mean or no contrast"):
        interpret_images(folder / "model.keras", flat)


def test_plots_of_a_record_are_figures_the_caller_saves(model_and_images, tmp_path):
    folder, images = model_and_images
    config = load_config("interpret", root=InterpretationConfig, **{"decode.replicates": 2})
    record = interpret_images(folder / "model.keras", images[:1], config)[0]
    figure = cfsx.io.plots.interpretation(record)
    assert type(figure).__name__ == "Figure" and len(figure.axes) >= 4
    path = cfsx.io.plots.save(figure, tmp_path / "one.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_public_function_and_class_has_a_docstring():
    import ast
    from pathlib import Path

    missing = []
    for path in sorted(Path(cfsx.__file__).parent.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            public = isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")
            if public and not ast.get_docstring(node):
                missing.append(f"{path.name}:{node.lineno} {node.name}")
    assert not missing, "no docstring: " + ", ".join(missing)


def test_docs_api_md_is_generated_from_the_current_docstrings():
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "api_docs.py"
    checked = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_quickstart_notebook_runs_and_shows_the_interpretation(tmp_path):
    from pathlib import Path

    import nbclient
    import nbformat

    notebook = nbformat.read(Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb", as_version=4)
    # Run outside the source tree, so the kernel imports the installed cfsx (with its compiled engine).
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert "hold-out of" in text and text.count("| truth") == 4
    assert "epochs" in text and "6/6" in text  # cfsx.ProgressBars drew the training's progress
    assert any("image/png" in output.get("data", {}) for output in outputs), "the figure was not shown"


def test_a_correction_step_is_added_in_one_place_and_reports_its_provenance(monkeypatch):
    """docs/architecture.md: a new step goes into cfsx.correction.steps.STEPS; its provenance follows the others'."""
    from cfsx.correction import steps as correction
    from cfsx.correction.provenance import Step, step_of

    class HalveStep(Step):
        KIND = "halve"

    def halve(work, config):
        work.resampled = work.resampled / 2
        return [HalveStep(details={"factor": 0.5})]

    image = np.random.default_rng(0).gamma(3.0, 1.0, size=(64, 64))
    plain = correction.correct_image(image, CorrectionConfig())
    steps = list(correction.STEPS)
    steps.insert(len(steps) - 1, (halve, None))  # before the normalisation
    monkeypatch.setattr(correction, "STEPS", tuple(steps))
    corrected = correction.correct_image(image, CorrectionConfig())
    names = [entry.kind for entry in corrected.provenance]
    assert names == [entry.kind for entry in plain.provenance][:-1] + ["halve", "normalise"]
    assert corrected.provenance[-1].factor == pytest.approx(2 * plain.provenance[-1].factor)
    halved = corrected.step("halve")
    assert step_of(halved.to_plain()) == halved and halved.to_plain() == {"step": "halve", "factor": 0.5}


def assert_same_record(first, second) -> None:
    """Two records hold the same values, arrays compared exactly (with their dtypes)."""
    import dataclasses

    def same(a, b, where: str) -> None:
        if dataclasses.is_dataclass(a):
            assert type(a) is type(b), where
            for item in dataclasses.fields(a):
                same(getattr(a, item.name), getattr(b, item.name), f"{where}.{item.name}")
        elif isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray) and a.dtype == b.dtype, where
            np.testing.assert_array_equal(a, b, err_msg=where)
        elif isinstance(a, dict):
            assert isinstance(b, dict) and list(a) == list(b), where
            for key in a:
                same(a[key], b[key], f"{where}[{key}]")
        elif isinstance(a, float) and np.isnan(a):
            assert isinstance(b, float) and np.isnan(b), where
        else:
            assert a == b, where

    same(first, second, "record")


def test_interpretation_records_round_trip_through_json_and_hdf5(model_and_images, tmp_path):
    from cfsx.interpretation import interpret
    from cfsx.interpretation.results import Interpretation, read_results_h5

    folder, images = model_and_images
    config = load_config("interpret", root=InterpretationConfig,
                         **{"decode.replicates": 2, "refine.enabled": True, "refine.decoded_iterations": 1,
                            "output.figures": False})  # fmt: skip
    written = interpret(folder / "model.keras", [str(folder / "unseen.h5")], tmp_path / "out", config,
                        CorrectionConfig())  # fmt: skip
    records = written.interpretations
    assert records[0].truth is not None and records[0].refinement is not None  # every optional part present
    for record in records:
        assert_same_record(record, Interpretation.from_json(record.to_json()))
    for record, read in zip(records, read_results_h5(tmp_path / "out" / "results.h5"), strict=True):
        assert_same_record(record, read)


def test_evaluation_reports_round_trip_through_json_and_hdf5(model_and_images, tmp_path):
    from cfsx.learning.evaluation import evaluate
    from cfsx.learning.evaluation_report import EvaluationReport, read_report_h5, write_report_h5

    folder, _ = model_and_images
    config = load_config("train-demo", ["evaluation.resimulated=2"], root=TrainingConfig)
    report = evaluate(folder / "model.keras", folder / "unseen.h5", tmp_path / "report", config)
    assert report.labelled and report.scope == "whole file" and report.cnn.samples == 4
    assert list(report.cnn.per_component) == ["alpha(0,1)", "alpha(1,0)", "alpha(1,1)"]
    assert report.decoded_count == 2 and set(report.decoded) == {"re-simulated truth", "decoded CNN",
                                                                 "decoded classical"}  # fmt: skip
    assert_same_record(report, EvaluationReport.from_json(report.to_json()))
    assert_same_record(report, EvaluationReport.from_json((tmp_path / "report" / "metrics.json").read_text()))
    write_report_h5(tmp_path / "report.h5", report)
    assert_same_record(report, read_report_h5(tmp_path / "report.h5"))
    unlabelled = evaluate(folder / "model.keras", folder / "corrected.h5", tmp_path / "unlabelled", config)
    assert not unlabelled.labelled and unlabelled.estimates["CNN"].mean.keys() == report.cnn.per_component.keys()
    write_report_h5(tmp_path / "unlabelled.h5", unlabelled)
    assert_same_record(unlabelled, read_report_h5(tmp_path / "unlabelled.h5"))
    assert "image tests only" in unlabelled.summary() and "CNN R2" in report.summary()
    with pytest.raises(DataError, match="not an evaluation report"):
        EvaluationReport.from_json(json.dumps({"format": "something else"}))


def test_correction_records_round_trip_through_json_and_the_corrected_file(tmp_path):
    from cfsx.correction import Correction, correct_files
    from cfsx.correction.corrected_file import read_corrections

    rng = np.random.default_rng(3)
    for number in range(2):
        image = rng.gamma(3.0, 1.0, size=(96, 96))
        image[40:50, 10:20] = np.nan  # a gap, filled by symmetry
        np.save(tmp_path / f"raw{number}.npy", image)
    written = correct_files([str(tmp_path / "raw*.npy")], tmp_path / "corrected.h5", CorrectionConfig())
    assert [c.source for c in written] == [str(tmp_path / "raw0.npy"), str(tmp_path / "raw1.npy")]
    assert written[0].step("read").source == str(tmp_path / "raw0.npy") and written[0].step("nothing") is None
    assert "cells filled by symmetry" in written[0].summary() and (written[0].mask == 1).any()
    for record, read in zip(written, read_corrections(tmp_path / "corrected.h5"), strict=True):
        assert_same_record(record, read)
        assert_same_record(record, Correction.from_json(record.to_json()))
    cells = written[0].record()["cells"]
    assert sum(cells.values()) == written[0].mask.size and cells["filled_by_symmetry"] > 0


def test_train_on_arrays_writes_the_data_beside_the_model_and_a_card_that_decodes(model_and_images, tmp_path):
    from cfsx.learning.evaluation import evaluate
    from cfsx.learning.model_card import ModelCard, read_model_card
    from cfsx.learning.training import TrainingArrays
    from cfsx.physics.encoding import cfs_vectors

    folder, _ = model_and_images
    with h5py.File(folder / "train.h5") as file:
        images, labels = file["images"][()], file["encodings/achieved"][()]
    data = TrainingArrays(images, labels, cfs_vectors(2), h_max=1.0, lot_size=10)
    config = load_config("train-demo", root=TrainingConfig, **{"fit.epochs": 1})
    result = train(data, tmp_path / "arrays.keras", config)
    card = read_model_card(result.model_path)
    assert card.cfs == 2 and card.image_size == images.shape[1] and card.lot_size == 10 and card.h_max == 1.0
    assert card.decoding().encoding.cfs == 2 and result.card.hold_out == card.hold_out
    assert ModelCard.from_json(card.to_json()).metadata == card.metadata
    assert card.training.data_files[0].path == str(tmp_path / "arrays-data.h5")
    with h5py.File(tmp_path / "arrays-data.h5") as file:
        np.testing.assert_array_equal(file["images"][()], images.astype(np.float32))
        assert file.attrs["kind"] == "arrays"
    report = evaluate(result.model_path, tmp_path / "arrays-data.h5", tmp_path / "report",
                      load_config("train-demo", ["evaluation.resimulated=0"], root=TrainingConfig))  # fmt: skip
    assert report.scope == "recorded hold-out" and report.cnn.samples == len(card.hold_out_indices)
    with pytest.raises(DataError, match="lattice vectors of a CFS"):
        train(TrainingArrays(images, labels, cfs_vectors(2)[::-1], 1.0, 10), tmp_path / "bad.keras", config)
    with pytest.raises(DataError, match="labels must be"):
        train(TrainingArrays(images, labels[:, :2], cfs_vectors(2), 1.0, 10), tmp_path / "bad.keras", config)
    assert not (tmp_path / "bad.keras").exists() and not (tmp_path / "bad-data.h5").exists()


def test_a_model_card_reads_and_writes_the_metadata_document_of_earlier_files_unchanged():
    import zipfile

    from cfsx.learning.model_card import METADATA_ENTRY, TrainingRun, read_model_card

    package = Path(cfsx.__file__).parent
    files = sorted((Path(__file__).parent / "data").glob("*.keras")) + sorted((package / "learning" / "builtin").glob(
        "*.keras"))  # fmt: skip
    assert len(files) >= 4
    for path in files:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read(METADATA_ENTRY))
        card = read_model_card(path)
        assert card.metadata == document, path  # nothing lost, renamed or reordered between file and card
        assert list(card.metadata["training"]) == list(document["training"]), path
        assert card.hold_out.r2 == document["metrics"]["test"]["r2"]
    # a training section of the first models, without the entries added since: they default
    first = {key: document["training"][key] for key in ("config", "data_fingerprint", "epochs_run", "best_epoch",
                                                         "seconds", "history")}  # fmt: skip
    run = TrainingRun.of(first)
    assert run.strategy == "default" and run.replicas == 1 and not run.interrupted and run.data_files == []
    assert run.epochs_run == document["training"]["epochs_run"] and run.history == document["training"]["history"]


def test_no_library_function_takes_more_than_seven_parameters():
    """Outside the Typer commands (which mirror their options) functions take a few named things."""
    import ast
    from pathlib import Path

    crowded = []
    for path in sorted((Path(__file__).resolve().parents[1] / "cfsx").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = node.args
                names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
                count = len(names) + bool(arguments.vararg) + bool(arguments.kwarg) - (names[:1] in (["self"], ["cls"]))
                command = any("command" in ast.unparse(decorator) for decorator in node.decorator_list)
                if count > 7 and not command:
                    crowded.append(f"{path.name}:{node.lineno} {node.name} ({count})")
    assert not crowded, crowded
