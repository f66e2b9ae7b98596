"""The typed records of issue 29 where they meet files: correction steps, generic rows and schemas, refinements of
older results files, checkpoints of older runs, model cards of older and newer files, the calibration options."""

import dataclasses
import json
import typing

import h5py
import jsonschema
import numpy as np
import pytest

from cfsx.config.flags import Calibration
from cfsx.correction.provenance import CorrectionRecord, MaskStep, ResampleStep, Step, SymmetryStep, step_of
from cfsx.errors import ConfigError, DataError
from cfsx.io import records
from cfsx.io.samples import Samples


def test_steps_read_from_files_are_written_back_as_they_were():
    entries = [
        {"step": "resample", "method": "area average", "image_size": 64},  # older: no calibrated, no window
        {"step": "symmetry", "symmetry": "friedel", "chi2": None, "filled_cells": 0},  # a null stays null
        {"step": "a-step-of-a-later-cfsx", "value": 1.5},  # an unknown kind keeps its name
        {"comment": "an entry without a step"},
    ]
    for entry in entries:
        step = step_of(entry)
        assert step.to_plain() == entry and list(step.to_plain()) == list(entry), entry
    assert step_of(entries[2]).kind == "a-step-of-a-later-cfsx" and type(step_of(entries[1])) is SymmetryStep
    resample = step_of(entries[0])
    assert isinstance(resample, ResampleStep) and resample.details == {"image_size": 64}
    record = CorrectionRecord.from_plain({"config": {"mask": {}}, "steps": entries})
    assert record.step("a-step-of-a-later-cfsx").details["value"] == 1.5 and record.step(ResampleStep) == resample
    # made by cfsx: named entries that are set, then the settings, with NumPy values made plain for JSON
    made = MaskStep(masked_pixels=np.int64(3), details={"zeros": "auto", "file": None, "edge": np.int32(2)})
    written = '{"step": "mask", "masked_pixels": 3, "zeros": "auto", "file": null, "edge": 2}'
    assert json.dumps(made.to_plain()) == written


def test_a_step_kind_is_registered_once_under_its_own_name():
    with pytest.raises(TypeError, match="KIND of its own"):

        class Resampled(ResampleStep):  # inherits "resample": would take over how every resample entry is read
            pass

    with pytest.raises(TypeError, match="is MaskStep already"):

        class Masked(Step):
            KIND = "mask"

    assert type(step_of({"step": "resample"})) is ResampleStep and type(step_of({"step": "mask"})) is MaskStep


@dataclasses.dataclass
class _Part:
    weight: float
    names: list[str]


def test_rows_of_records_round_trip_through_hdf5_stacked_or_as_text(tmp_path):
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3) + index for index in range(3)]
    parts = [_Part(0.5, ["a"]), None, _Part(np.inf, [])]
    with h5py.File(tmp_path / "rows.h5", "w") as file:
        records.write_rows(file, "arrays", arrays)
        records.write_rows(file, "parts", parts)
        records.write_rows(file, "ragged", [np.zeros(2), np.zeros(3)])
        assert file["arrays"].shape == (3, 2, 3) and file["arrays"].dtype == np.float32  # stacked, own precision
        assert file["parts"].dtype.kind == "O" and file["ragged"].dtype.kind == "O"  # one JSON text per record
    with h5py.File(tmp_path / "rows.h5") as file:
        read = records.read_rows(file, "arrays", np.ndarray)
        np.testing.assert_array_equal(np.stack(read), np.stack(arrays))
        assert records.read_rows(file, "parts", _Part | None) == parts
        assert [len(item) for item in records.read_rows(file, "ragged", np.ndarray)] == [2, 3]


def test_a_json_schema_follows_each_kind_of_type():
    schema = records.json_schema(dict[str, list[tuple[int, ...]]] | None)
    lists = {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}
    assert schema == {"anyOf": [{"type": "object", "additionalProperties": lists}, {"type": "null"}]}
    part = records.json_schema(_Part)
    assert part["required"] == ["weight", "names"] and part["properties"]["weight"] == {"type": ["number", "null"]}
    jsonschema.validate(records.to_plain(np.zeros((2, 2))), records.json_schema(np.ndarray))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"weight": 1.0}, part)  # names is required
    assert records.json_schema(typing.Any) == {}


def test_refinements_of_a_version_3_results_file_are_read_with_their_stages_named():
    from cfsx.interpretation.results import _refinements

    def stage(encoding):
        return {"encoding": {"alpha(0,1)": encoding[0], "alpha(1,0)": encoding[1]}, "expected_r2": 0.5,
                "decoded_r2": 0.4}  # fmt: skip

    common = {"decoded_evaluations": 3, "seconds": 1.0, "history": [0.4]}
    kept_start = {"start": stage([0.1, 0.2]), "expected": stage([0.3, 0.4]), "refined": stage([0.1, 0.2]), **common}
    moved = {"start": stage([0.1, 0.2]), "expected": stage([0.3, 0.4]), "refined": stage([0.5, 0.6]), **common}
    read = _refinements(json.dumps({"from_cnn": kept_start, "from_zero": moved}), version=3)
    assert read["from_cnn"].refined.name == "start" and read["from_zero"].refined.name == "decoded"
    np.testing.assert_array_equal(read["from_zero"].refined.encoding, [0.5, 0.6])
    assert read["from_zero"].expected.name == "expected" and read["from_zero"].decoded_evaluations == 3


def test_a_checkpointed_batch_of_an_earlier_cfsx_is_read_by_field(tmp_path):
    from cfsx.simulation.simulate import _batch_file, _load_batch

    parts = tmp_path / "out.h5.parts"
    parts.mkdir()
    earlier = {"images": np.ones((2, 4, 4)), "encodings__achieved": np.zeros((2, 3)), "encodings__target": np.ones(
        (2, 3)), "seeds": np.arange(2, dtype=np.uint64), "something_new": np.zeros(2)}  # fmt: skip
    np.savez(_batch_file(parts, 0), **earlier)
    samples = _load_batch(parts, 0)
    assert isinstance(samples, Samples) and samples.achieved.shape == (2, 3) and samples.target.sum() == 6
    assert set(samples.present()) == {"images", "achieved", "target", "seeds"}  # an unknown key is left out


def test_model_cards_keep_what_they_do_not_name_and_refuse_bad_json_in_one_line():
    import zipfile
    from pathlib import Path

    from cfsx.learning.model_card import ModelCard

    path = next((Path(__file__).parent / "data").glob("*.keras"))
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("cfsx_metadata.json"))
    document["a_later_entry"] = {"kept": True}
    document["training"]["a_later_training_entry"] = 7
    del document["metrics"]["test"]["mean_residual"]  # an earlier file's scores
    card = ModelCard.from_metadata(document, path)
    assert card.metadata["a_later_entry"] == {"kept": True} and card.metadata["training"]["a_later_training_entry"] == 7
    assert np.isnan(card.hold_out.mean_residual) and card.hold_out.r2 == document["metrics"]["test"]["r2"]
    for text in ("not json", "[]", json.dumps({"path": "x"}), json.dumps({"path": "x", "metadata": {"cfs": 2}})):
        with pytest.raises(DataError, match="not a model card's JSON"):
            ModelCard.from_json(text)


def test_calibration_options_are_named_as_the_command_line_or_the_form_has_them():
    from cfsx.app.cli.common import FLAGS

    for names, origin, per_rlu in ((FLAGS, "--origin", "--pixels-per-rlu"), (None, "origin", "pixels_per_rlu")):
        with pytest.raises(ConfigError, match=f"^{origin} must be two numbers: ROW,COLUMN"):
            Calibration(origin="a,b").overrides(names)
        with pytest.raises(ConfigError, match=f"^{per_rlu} must be two numbers"):
            Calibration(pixels_per_rlu="3").overrides(names)
    assert Calibration(centre="H=-2,L=4").overrides()["geometry.centre"] == {"H": -2.0, "L": 4.0}
    assert Calibration(origin="10, 20", pixels_per_rlu="8,8").overrides()["geometry.origin"] == [10.0, 20.0]
    with pytest.raises(ConfigError, match="^--centre must name two axes"):
        Calibration(centre="H=1").overrides(FLAGS)
