"""Interpretation records: what ``interpret`` found for each image, and the result files made from them.

``interpret_images`` (cfsx.interpretation) returns one ``Interpretation`` per image; the CLI prints
their ``summary``, ``results_document`` makes results.json from them (cfsx/results.schema.json) and
``write_results_h5`` results.h5. A notebook reads the same records: no file is needed in between.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .encoding import named, vector_labels
from .estimates import FINAL_RULE

RESULTS_FORMAT = "cfsx-interpretation"
RESULTS_FORMAT_VERSION = 2  # 2: model.sha256, model.builtin, config.decode.concentration


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
class DecodedReplicates:
    """The structures decoded from one image's final encoding, one per seed, and how well each explains it.

    Arrays over the R replicates; image R2 and MSE are taken after the least-squares ``scale`` (an
    observation is in arbitrary units); ``image_r2_floor`` holds the R2 of each pair of replicates
    against each other: the best any encoding can reach under these simulation settings.
    """

    images: np.ndarray  # (R, M, M)
    lattices: np.ndarray  # (R, N, N)
    achieved: np.ndarray  # (R, D) the correlations each decoded structure reached
    interactions: np.ndarray  # (R, D)
    cycles: np.ndarray  # (R,)
    image_r2: np.ndarray  # (R,)
    image_mse: np.ndarray  # (R,) in the engine's units
    scale: np.ndarray  # (R,) observation ~ scale * decoded image
    image_r2_floor: np.ndarray  # (R (R - 1) / 2,)


@dataclass
class Interpretation:
    """One image's interpretation: every estimate of its encoding, the final answer, its uncertainty, the
    decoded structures and their scores, the refinement (when asked for) and what made it."""

    source: str
    observed: np.ndarray  # (M, M) the image on the model's grid, as interpreted
    vectors: np.ndarray  # (D, 2) the encoding's lattice vectors
    encoding: np.ndarray  # (D,) the final answer
    final_source: str  # the estimate the final answer is (FINAL_RULE)
    estimates: dict[str, np.ndarray]  # (D,) per method; NaN where the method is undefined for this image
    transpose_difference: np.ndarray  # (D,) half the CNN's change on the transposed image
    provenance: Provenance
    replicate_std: np.ndarray | None = None  # (D,) the CNN's spread over the decoded structures' images
    decoded: DecodedReplicates | None = None  # of the final encoding
    decoded_image_r2: dict[str, np.ndarray] | None = None  # (R,) per method, when decoded
    mask: np.ndarray | None = None  # (M, M) 0 measured, 1 symmetry, 2 inpainted
    truth: np.ndarray | None = None  # (D,) the achieved alpha of a simulated input
    refinement: dict[str, Any] | None = None  # per start ("from_cnn", "from_zero"): its stages

    @property
    def labels(self) -> list[str]:
        return vector_labels(self.vectors)

    @property
    def uncertainty(self) -> np.ndarray:
        """Per component: the spread over the decoded structures where decoded, else the transpose difference."""
        return self.transpose_difference if self.replicate_std is None else self.replicate_std

    def defined(self, method: str) -> bool:
        return bool(np.isfinite(self.estimates[method]).all())

    def to_json(self, index: int, figure: str | None = None) -> dict[str, Any]:
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
            "refinement": self.refinement,
            "figure": figure,
        }
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

    def summary(self) -> str:
        """One line: the final encoding with its uncertainty, and which estimate it is."""
        values = ", ".join(
            f"{label} {value:+.3f}±{sigma:.3f}"
            for label, value, sigma in zip(self.labels, self.encoding, self.uncertainty, strict=True)
        )
        return f"{short_name(self.source)} ({self.final_source.replace('_', ' ')}): {values}"


def short_name(source: str) -> str:
    """'dir/data.h5::/images[3]' -> 'data.h5[3]'; 'dir/plane.tif' -> 'plane.tif'."""
    path, _, inner = source.partition("::")
    name = Path(path).name
    return name + inner[len("/images") :] if inner.startswith("/images[") else name


def _spread(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "values": [float(v) for v in values]}  # fmt: skip


def stacked(interpretations: list[Interpretation], method: str | None = None) -> np.ndarray:
    """(S, D): the final encodings, or one method's estimates, of every image."""
    return np.stack([i.encoding if method is None else i.estimates[method] for i in interpretations])


def results_document(interpretations: list[Interpretation], figures: list[str | None] | None = None) -> dict[str, Any]:
    """results.json (schema: cfsx/results.schema.json) for a run's interpretations; ``seconds`` added by the caller."""
    from .metrics import regression_metrics

    provenance = interpretations[0].provenance
    methods = list(interpretations[0].estimates)
    figures = figures or [None] * len(interpretations)
    records = [item.to_json(index, figure) for index, (item, figure) in enumerate(zip(interpretations, figures,
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


def write_results_h5(path: Path, interpretations: list[Interpretation]) -> None:
    """results.h5: every array behind results.json, one row per image."""
    import h5py

    from .nexus import add_view
    from .outputs import hdf5_writer

    first, provenance = interpretations[0], interpretations[0].provenance
    with hdf5_writer(path) as file:
        file.attrs.update(format=RESULTS_FORMAT, format_version=RESULTS_FORMAT_VERSION,
                          cfsx_version=provenance.cfsx_version, model=provenance.model.path, labels=first.labels,
                          config=yaml.safe_dump(provenance.config, sort_keys=False))  # fmt: skip
        file["observed"] = np.stack([i.observed for i in interpretations]).astype(np.float32)
        file.create_dataset("sources", data=[i.source for i in interpretations], dtype=h5py.string_dtype())
        if first.mask is not None:
            file["masks"] = np.stack([i.mask for i in interpretations])
        if first.truth is not None:
            file["truth"] = np.stack([i.truth for i in interpretations]).astype(np.float32)
        file["encodings/final"] = stacked(interpretations).astype(np.float32)
        for name in first.estimates:
            file[f"encodings/{name}"] = stacked(interpretations, name).astype(np.float32)
        file.create_dataset("final_source", data=[i.final_source for i in interpretations], dtype=h5py.string_dtype())
        file["uncertainty/transpose"] = np.stack([i.transpose_difference for i in interpretations]).astype(np.float32)
        add_view(file, signal="observed", h_max=provenance.model.h_max, title="cfsx interpret",
                 config_text=yaml.safe_dump(provenance.config, sort_keys=False))  # fmt: skip
        if first.decoded is None:
            return
        file["uncertainty/replicates"] = np.stack([i.replicate_std for i in interpretations]).astype(np.float32)
        for name in ("images", "lattices", "achieved", "interactions", "cycles", "image_r2", "image_mse", "scale",
                     "image_r2_floor"):  # fmt: skip
            file[f"decoded/{name}"] = np.stack([getattr(i.decoded, name) for i in interpretations])
        file["decoded/seeds"] = np.asarray(provenance.decode_seeds, dtype=np.uint64)
        for name in first.decoded_image_r2:
            file[f"decoded_image_r2/{name}"] = np.stack([i.decoded_image_r2[name] for i in interpretations])
        if first.refinement is not None:
            for start in first.refinement:
                encodings = [list(i.refinement[start]["refined"]["encoding"].values()) for i in interpretations]
                file[f"refinement/{start}"] = np.array(encodings, dtype=np.float32)
