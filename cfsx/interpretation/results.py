"""Interpretation records: what ``interpret`` found for each image, and the result files made from them.

``interpret_images`` (cfsx.interpretation) returns one ``Interpretation`` per image; the CLI prints
their ``summary``, ``results_document`` makes results.json from them (cfsx/results.schema.json) and
``write_results_h5`` results.h5. A notebook reads the same records: no file is needed in between.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cfsx.correction.provenance import CorrectionRecord, ResampleStep
from cfsx.interpretation.estimates import FINAL_RULE, ImageFacts
from cfsx.interpretation.fit_quality import VERDICTS, Ceilings, Verdict
from cfsx.interpretation.quality import EstimateFit
from cfsx.interpretation.refinement import Refinement, Stage
from cfsx.io import records
from cfsx.io.readers import short_name
from cfsx.physics.encoding import named, vector_labels
from cfsx.simulation import Decoded

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
RESULTS_FORMAT = "cfsx-interpretation"
# 2: model.sha256, model.builtin, config.decode.concentration; 3: fit, ceilings, verdict, correction, model images;
# 4: results.h5 /refinement/records as Refinement records (encodings as arrays, stages named)
RESULTS_FORMAT_VERSION = 4


@dataclass(frozen=True)
class ModelSummary:
    """The model an interpretation came from, as results.json records it."""

    path: str
    sha256: str
    builtin: str | None  # the built-in model's name, None for a file
    cfs: int
    architecture: str
    image_size: int
    h_max: float
    hold_out_r2: float


@dataclass(frozen=True)
class Provenance:
    """What made an interpretation: the model, the resolved interpretation config, the decoding seeds."""

    model: ModelSummary
    config: dict[str, Any]
    decode_seeds: tuple[int, ...]
    cfsx_version: str
    created: str  # ISO 8601, UTC


@dataclass
class Interpretation:
    """One image's interpretation: every estimate of its encoding, the final answer, its uncertainty, the
    decoded structures and their scores, the refinement (when asked for) and what made it."""

    source: str
    observed: np.ndarray  # (M, M) float32: the image on the model's grid, as interpreted
    vectors: np.ndarray  # (D, 2) the encoding's lattice vectors
    encoding: np.ndarray  # (D,) the final answer
    final_source: str  # the estimate the final answer is (FINAL_RULE)
    estimates: dict[str, np.ndarray]  # (D,) per method; NaN where the method is undefined for this image
    transpose_difference: np.ndarray  # (D,) half the CNN's change on the transposed image
    provenance: Provenance
    replicate_std: np.ndarray | None = None  # (D,) the CNN's spread over the decoded structures' images
    decoded: Decoded | None = None  # the final encoding's replicates, (R, ...)
    decoded_image_r2: dict[str, np.ndarray] | None = None  # (R,) per method, when decoded
    mask: np.ndarray | None = None  # (M, M) 0 measured, 1 symmetry, 2 inpainted
    truth: np.ndarray | None = None  # (D,) the achieved alpha of a simulated input
    refinement: dict[str, Refinement] | None = None  # per start ("from_cnn", "from_zero")
    correction: CorrectionRecord | None = None  # how cfsx correct made the image; None if simulated
    fits: dict[str, EstimateFit] | None = None  # per estimate: its model images against the measured cells
    ceilings: Ceilings | None = None  # what Warren-Cowley images can explain of this image
    verdict: Verdict | None = None  # whether the final answer explains the image, with its reasons
    model_image: np.ndarray | None = None  # (M, M) float32: the final answer's model image, fitted to the image
    facts: ImageFacts | None = None  # what correct did to the image and its long-range order (the final rule's input)

    @property
    def labels(self) -> list[str]:
        return vector_labels(self.vectors)

    @property
    def uncertainty(self) -> np.ndarray:
        """Per component: the spread over the decoded structures where decoded, else the transpose difference."""
        return self.transpose_difference if self.replicate_std is None else self.replicate_std

    def defined(self, method: str) -> bool:
        return bool(np.isfinite(self.estimates[method]).all())

    def results_record(self, index: int, figure: str | None = None) -> dict[str, Any]:
        """The image's record in results.json (cfsx/results.schema.json)."""
        labels, decoded = self.labels, self.decoded
        record: dict[str, Any] = {
            "index": index,
            "source": self.source,
            "encoding": named(labels, self.encoding),
            "final_source": self.final_source,
            "cnn_encoding": named(labels, self.estimates["cnn"]),
            "estimates": {
                name: {
                    "encoding": named(labels, values) if self.defined(name) else None,
                    "decoded_image_r2": _spread(self.decoded_image_r2[name])
                    if self.decoded_image_r2 is not None and self.defined(name)
                    else None,
                }
                for name, values in self.estimates.items()
            },
            "uncertainty": {
                "replicates": None if self.replicate_std is None else named(labels, self.replicate_std),
                "transpose": named(labels, self.transpose_difference),
            },
            "decoded": None,
            "truth": None,
            "refinement": None
            if self.refinement is None
            else {start: _refinement_record(refinement, labels) for start, refinement in self.refinement.items()},
            "figure": figure,
            "correction": None if self.correction is None else self.correction.to_plain(),
            "fit": None if self.fits is None else finite({name: records.to_plain(f) for name, f in self.fits.items()}),
            "ceilings": None if self.ceilings is None else finite(records.to_plain(self.ceilings)),
            "verdict": None if self.verdict is None else records.to_plain(self.verdict),
        }
        for name, _ in generic_fields():
            if name in record:
                raise ValueError(f"Interpretation.{name} would replace results.json's own key {name!r}: rename it")
            record[name] = finite(records.to_plain(getattr(self, name)))
        if decoded is not None:
            record["decoded"] = {
                "image_r2": _spread(decoded.image_r2),
                "image_mse": _spread(decoded.image_mse),
                "scale": _spread(decoded.scale),
                "image_r2_floor": _spread(decoded.image_r2_floor) if decoded.image_r2_floor.size else None,
                "achieved": named(labels, decoded.achieved[0]),
                "cycles": int(decoded.cycles[0]),
            }
        if self.truth is not None and np.isfinite(self.truth).all():
            record["truth"] = {
                "encoding": named(labels, self.truth),
                "cnn_mae": float(np.abs(self.estimates["cnn"] - self.truth).mean()),
                "final_mae": float(np.abs(self.encoding - self.truth).mean()),
                "mae": {name: float(np.abs(values - self.truth).mean()) if self.defined(name) else None
                        for name, values in self.estimates.items()},
            }  # fmt: skip
        return record

    def to_json(self) -> str:
        """The whole record as JSON text (arrays as nested lists with their dtype): ``from_json`` gives it back."""
        return records.to_json(self)

    @classmethod
    def from_json(cls, text: str) -> Interpretation:
        """The record ``to_json`` wrote."""
        return records.from_json(cls, text)

    def summary(self) -> str:
        """One line: the final encoding with its uncertainty, and which estimate it is."""
        values = ", ".join(
            f"{label} {value:+.3f}±{sigma:.3f}"
            for label, value, sigma in zip(self.labels, self.encoding, self.uncertainty, strict=True)
        )
        return f"{short_name(self.source)} ({self.final_source.replace('_', ' ')}): {values}"


# The fields results.json and results.h5 lay out by hand (docs/format.md); every other field of Interpretation follows
# the generic rule: in results.json under its name as records.to_plain makes it, in results.h5 as /fields/NAME (arrays
# stacked, anything else JSON text per image), in results.schema.json from its type (tools/results_schema.py).
LAID_OUT = ("source", "observed", "vectors", "encoding", "final_source", "estimates", "transpose_difference",
            "provenance", "replicate_std", "decoded", "decoded_image_r2", "mask", "truth", "refinement", "correction",
            "fits", "ceilings", "verdict", "model_image")  # fmt: skip
GENERATED = "generated from the record:"


def generic_fields() -> list[tuple[str, Any]]:
    """The fields of Interpretation that follow the generic rule (LAID_OUT), with their types."""
    hints = typing.get_type_hints(Interpretation)
    return [(item.name, hints[item.name]) for item in fields(Interpretation) if item.name not in LAID_OUT]


def results_schema(written: dict[str, Any] | None = None) -> dict[str, Any]:
    """results.schema.json as the records make it from the ``written`` one (default: the installed file): the
    laid-out fields as written by hand, every other field's schema generated from its type (tools/results_schema.py
    rewrites the file; a test checks it)."""
    schema = json.loads(SCHEMA_PATH.read_text()) if written is None else json.loads(json.dumps(written))
    properties = schema["$defs"]["record"]["properties"]
    for name in [name for name, value in properties.items() if GENERATED in value.get("$comment", "")]:
        del properties[name]
    for name, hint in generic_fields():
        properties[name] = {"$comment": f"{GENERATED} Interpretation.{name}", **records.json_schema(hint)}
    return schema


def finite(value: Any) -> Any:
    """JSON values with every NaN or infinite float as null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _refinement_record(refinement: Refinement, labels: list[str]) -> dict[str, Any]:
    """A refinement in results.json: each stage's encoding by label, its expected and decoded R2."""

    def stage(item: Stage) -> dict[str, Any]:
        return {"encoding": named(labels, item.encoding), "expected_r2": item.expected_r2,
                "decoded_r2": item.decoded_r2}  # fmt: skip

    return {"start": stage(refinement.start), "expected": stage(refinement.expected),
            "refined": stage(refinement.refined), "decoded_evaluations": refinement.decoded_evaluations,
            "seconds": refinement.seconds, "history": refinement.history}  # fmt: skip


def _spread(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "values": [float(v) for v in values]}  # fmt: skip


def stacked(interpretations: list[Interpretation], method: str | None = None) -> np.ndarray:
    """(S, D): the final encodings, or one method's estimates, of every image."""
    return np.stack([i.encoding if method is None else i.estimates[method] for i in interpretations])


def results_document(interpretations: list[Interpretation], figures: list[str | None] | None = None) -> dict[str, Any]:
    """results.json (schema: cfsx/results.schema.json) for a run's interpretations; ``seconds`` added by the caller."""
    from cfsx.physics.metrics import regression_metrics

    provenance = interpretations[0].provenance
    methods = list(interpretations[0].estimates)
    figures = figures or [None] * len(interpretations)
    records = [item.results_record(index, figure) for index, (item, figure) in enumerate(zip(interpretations, figures,
                                                                                       strict=True))]  # fmt: skip
    decoded = [item.decoded for item in interpretations]
    r2 = None if decoded[0] is None else np.array([d.image_r2.mean() for d in decoded])
    sources = [item.final_source for item in interpretations]
    document: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_FORMAT_VERSION,
        "cfsx_version": provenance.cfsx_version,
        "created": provenance.created,
        "model": asdict(provenance.model),
        "labels": interpretations[0].labels,
        "config": provenance.config,
        "decode_seeds": list(provenance.decode_seeds),
        "summary": {
            "images": len(records),
            "final_rule": FINAL_RULE,
            "final_sources": {name: sources.count(name) for name in methods},
            "image_r2_median": None if r2 is None else float(np.median(r2)),
            "image_r2_mean": None if r2 is None else float(r2.mean()),
            "verdicts": {
                label: sum(1 for item in interpretations if item.verdict and item.verdict.label == label)
                for label in VERDICTS
            },
        },
        "images": records,
    }
    truths = [item.truth for item in interpretations]
    if all(t is not None and np.isfinite(t).all() for t in truths):
        truth, labels = np.stack(truths), interpretations[0].labels
        scored = {**{name: stacked(interpretations, name) for name in methods}, "final": stacked(interpretations)}
        document["summary"]["encoding"] = {
            name: regression_metrics(truth, values, labels) if len(values) > 1 and np.isfinite(values).all() else None
            for name, values in scored.items()
        }
    return document


INDENTED_RESULTS = 256  # results.json of more images is written on one line (the C encoder, ~10x faster)


def write_results(
    directory: Path,
    interpretations: list[Interpretation],
    figures: list[str | None] | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """results.h5 and results.json of a run's interpretations into ``directory`` (``interpret`` and the server's
    worker alike); returns results.json's document."""
    write_results_h5(Path(directory) / "results.h5", interpretations)
    document = results_document(interpretations, figures)
    if seconds is not None:
        document["seconds"] = seconds
    indent = 1 if len(interpretations) <= INDENTED_RESULTS else None
    (Path(directory) / "results.json").write_text(json.dumps(document, indent=indent))
    return document


DECODED_ARRAYS = tuple(item.name for item in fields(Decoded) if item.name != "seeds")  # per image; the seeds once


def write_results_h5(path: Path, interpretations: list[Interpretation]) -> None:
    """results.h5: every array behind results.json, one row per image, at the records' own precision;
    ``read_results_h5`` gives the records back."""
    import h5py

    from cfsx.io.nexus import add_view, add_window_axes
    from cfsx.io.outputs import hdf5_writer

    first, provenance = interpretations[0], interpretations[0].provenance
    text = h5py.string_dtype()
    with hdf5_writer(path) as file:
        file.attrs.update(format=RESULTS_FORMAT, format_version=RESULTS_FORMAT_VERSION,
                          cfsx_version=provenance.cfsx_version, model=provenance.model.path, labels=first.labels,
                          config=yaml.safe_dump(provenance.config, sort_keys=False),
                          provenance=records.to_json(provenance))  # fmt: skip
        file["observed"] = np.stack([i.observed for i in interpretations])
        file["vectors"] = first.vectors
        file.create_dataset("sources", data=[i.source for i in interpretations], dtype=text)
        if first.mask is not None:
            file["masks"] = np.stack([i.mask for i in interpretations])
        if first.truth is not None:
            file["truth"] = np.stack([i.truth for i in interpretations])
        file["encodings/final"] = stacked(interpretations)
        for name in first.estimates:
            file[f"encodings/{name}"] = stacked(interpretations, name)
        file["encodings"].attrs["methods"] = list(first.estimates)
        file.create_dataset("final_source", data=[i.final_source for i in interpretations], dtype=text)
        file["uncertainty/transpose"] = np.stack([i.transpose_difference for i in interpretations])
        add_view(file, signal="observed", h_max=provenance.model.h_max, title="cfsx interpret",
                 config_text=yaml.safe_dump(provenance.config, sort_keys=False))  # fmt: skip
        windows = [_window_of(i.correction) for i in interpretations]
        add_window_axes(file["entry/data"], windows, first.observed.shape[-1], provenance.model.h_max)
        if first.refinement is not None:
            for start in first.refinement:
                file[f"refinement/{start}"] = np.stack([i.refinement[start].refined.encoding for i in interpretations])
            file.create_dataset("refinement/records", data=[records.to_json(i.refinement) for i in interpretations],
                                dtype=text)  # fmt: skip
        if first.verdict is not None:
            quality = [records.to_json({"fits": i.fits, "ceilings": i.ceilings, "verdict": i.verdict}) for i in
                       interpretations]  # fmt: skip
            file.create_dataset("quality", data=quality, dtype=text)
            file["model_images"] = np.stack([i.model_image for i in interpretations])
            file["model_images"].attrs["long_name"] = "the final answer's model image, fitted to the observed one"
        if any(i.correction is not None for i in interpretations):
            plain = [None if i.correction is None else i.correction.to_plain() for i in interpretations]
            file.create_dataset("correction", data=[json.dumps(item, default=float) for item in plain], dtype=text)
        for name, _ in generic_fields():
            records.write_rows(file.require_group("fields"), name, [getattr(i, name) for i in interpretations])
        if first.decoded is None:
            return
        file["uncertainty/replicates"] = np.stack([i.replicate_std for i in interpretations])
        for name in DECODED_ARRAYS:
            file[f"decoded/{name}"] = np.stack([getattr(i.decoded, name) for i in interpretations])
        file["decoded/seeds"] = np.asarray(provenance.decode_seeds, dtype=np.uint64)
        for name in first.decoded_image_r2:
            file[f"decoded_image_r2/{name}"] = np.stack([i.decoded_image_r2[name] for i in interpretations])


def read_results_h5(path: str | Path) -> list[Interpretation]:
    """The Interpretation records of a results.h5 that ``write_results_h5`` wrote."""
    import h5py

    from cfsx.errors import DataError

    with h5py.File(path, "r") as file:
        if file.attrs.get("format") != RESULTS_FORMAT or "provenance" not in file.attrs:
            raise DataError(f"{path} is not a results.h5 of this cfsx (format {RESULTS_FORMAT}, with provenance)")
        provenance = records.from_json(Provenance, file.attrs["provenance"])
        methods = [str(name) for name in file["encodings"].attrs["methods"]]
        arrays = {name: file[name][()] for name in ("observed", "vectors", "masks", "truth") if name in file}
        sources = [text.decode() for text in file["sources"][()]]
        final_sources = [text.decode() for text in file["final_source"][()]]
        encodings = {name: file[f"encodings/{name}"][()] for name in ["final", *methods]}
        transpose = file["uncertainty/transpose"][()]
        replicates = file["uncertainty/replicates"][()] if "uncertainty/replicates" in file else None
        decoded = {name: file[f"decoded/{name}"][()] for name in DECODED_ARRAYS} if "decoded" in file else None
        decode_seeds = file["decoded/seeds"][()] if "decoded" in file else None
        decoded_r2 = {name: file[f"decoded_image_r2/{name}"][()] for name in file.get("decoded_image_r2", [])}
        refinements = file.get("refinement/records")
        version = int(file.attrs.get("format_version", RESULTS_FORMAT_VERSION))
        refinements = None if refinements is None else [_refinements(text, version) for text in refinements[()]]
        corrections = file.get("correction")
        corrections = [None] * len(sources) if corrections is None else [_correction(t) for t in corrections[()]]
        quality = [_quality(text) for text in file["quality"][()]] if "quality" in file else [{}] * len(sources)
        model_images = file["model_images"][()] if "model_images" in file else [None] * len(sources)
        more = file.get("fields", {})
        generic = {name: records.read_rows(more, name, hint) for name, hint in generic_fields() if name in more}
    return [
        Interpretation(
            source=source,
            observed=arrays["observed"][index],
            vectors=arrays["vectors"],
            encoding=encodings["final"][index],
            final_source=final_sources[index],
            estimates={name: encodings[name][index] for name in methods},
            transpose_difference=transpose[index],
            provenance=provenance,
            replicate_std=None if replicates is None else replicates[index],
            decoded=None
            if decoded is None
            else Decoded(**{k: v[index] for k, v in decoded.items()}, seeds=decode_seeds),  # fmt: skip
            decoded_image_r2=None if decoded is None else {name: r2[index] for name, r2 in decoded_r2.items()},
            mask=arrays["masks"][index] if "masks" in arrays else None,
            truth=arrays["truth"][index] if "truth" in arrays else None,
            refinement=None if refinements is None else refinements[index],
            correction=corrections[index],
            fits=quality[index].get("fits"),
            ceilings=quality[index].get("ceilings"),
            verdict=quality[index].get("verdict"),
            model_image=model_images[index],
            **{name: rows[index] for name, rows in generic.items()},
        )
        for index, source in enumerate(sources)
    ]


def _window_of(correction: CorrectionRecord | None) -> dict[str, Any] | None:
    """The calibrated window of a correction record (its resample step's ``window``), None without one."""
    return None if correction is None else getattr(correction.step(ResampleStep), "window", None)


def _correction(text: bytes | str) -> CorrectionRecord | None:
    plain = json.loads(text)
    return None if plain is None else CorrectionRecord.from_plain(plain)


def _refinements(text: bytes | str, version: int) -> dict[str, Refinement]:
    """One image's refinements in results.h5, per start, as records (version 3: results.json's form)."""
    plain = json.loads(text)
    if version < 4:
        plain = {start: _refinement_of_version_3(item) for start, item in plain.items()}
    return {start: records.from_plain(Refinement, item) for start, item in plain.items()}


def _refinement_of_version_3(plain: dict[str, Any]) -> dict[str, Any]:
    """A refinement as results.h5 version 3 kept it (stages unnamed, encodings by label), as version 4 does: the
    refined stage is the start or the expected-intensity fit when it holds their encoding, else a decoded step."""
    encodings = {key: list(plain[key]["encoding"].values()) for key in ("start", "expected", "refined")}
    names = {"start": "start", "expected": "expected",
             "refined": next((key for key in ("start", "expected") if encodings[key] == encodings["refined"]),
                             "decoded")}  # fmt: skip
    for key, name in names.items():
        array = {"array": encodings[key], "dtype": "<f8"}
        plain[key] = {**plain[key], "name": name, "encoding": array, "decoded_image": None}
    return plain


def _quality(text: bytes | str) -> dict[str, Any]:
    """The fits, ceilings and verdict of one image in results.h5, as records."""
    plain = json.loads(text)
    fits = {name: records.from_plain(EstimateFit, fit) for name, fit in (plain.get("fits") or {}).items()}
    return {"fits": fits, "ceilings": records.from_plain(Ceilings, plain["ceilings"]),
            "verdict": records.from_plain(Verdict, plain["verdict"])}  # fmt: skip
