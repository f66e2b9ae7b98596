"""What ``cfsx info`` shows of a dataset (``describe``): size, encoding, config, label statistics and how closely
the feedback reached its targets (``reach_summary``, also reported by ``cfsx simulate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cfsx.io.dataset import open_dataset

if TYPE_CHECKING:
    from cfsx.config import SimulationConfig


@dataclass(frozen=True)
class ReachSummary:
    """How far the achieved alpha landed from the targets."""

    tolerance: float
    reached_fraction: float  # samples with every component within tolerance
    mean_max_deviation: float
    median_max_deviation: float
    p95_max_deviation: float
    worst_max_deviation: float
    mean_cycles: float
    max_cycles: int
    stops: dict[str, int] | None = None  # samples per stop reason (engine.STOP_REASONS); None for older files

    def summary(self) -> str:
        """Two lines: how closely the targets were reached, and why the feedback stopped."""
        reached = (
            f"targets reached within {self.tolerance:g}: {100 * self.reached_fraction:.1f} % of samples; "
            f"max |achieved - target| per sample: mean {self.mean_max_deviation:.3f}, median "
            f"{self.median_max_deviation:.3f}, 95th percentile {self.p95_max_deviation:.3f}, worst "
            f"{self.worst_max_deviation:.3f}"
        )
        if self.stops is None:
            return reached + (f"\nfeedback cycles: mean {self.mean_cycles:.1f}, max {self.max_cycles}; stop reasons "
                              "not recorded (a file made before cfsx recorded them)")  # fmt: skip
        counts = ", ".join(f"{name} {count}" for name, count in self.stops.items())
        return reached + f"\nfeedback stopped: {counts}; cycles: mean {self.mean_cycles:.1f}, max {self.max_cycles}"


def reach_summary(achieved: np.ndarray, target: np.ndarray, cycles: np.ndarray, tolerance: float,
                  stop_reasons: np.ndarray | None = None) -> ReachSummary:  # fmt: skip
    """How closely the samples reached their targets (largest component deviation), and why they stopped."""
    from cfsx.physics.engine import STOP_REASONS

    deviation = np.abs(np.asarray(achieved, np.float64) - np.asarray(target, np.float64)).max(axis=1)
    # The float32 labels are compared with a rounding margin.
    reached = deviation <= tolerance + 1e-6
    return ReachSummary(
        tolerance=float(tolerance),
        reached_fraction=float(reached.mean()),
        mean_max_deviation=float(deviation.mean()),
        median_max_deviation=float(np.median(deviation)),
        p95_max_deviation=float(np.percentile(deviation, 95)),
        worst_max_deviation=float(deviation.max()),
        mean_cycles=float(np.mean(cycles)),
        max_cycles=int(np.max(cycles)),
        stops=None if stop_reasons is None else
        {name: int(np.count_nonzero(np.asarray(stop_reasons) == code)) for code, name in enumerate(STOP_REASONS)},
    )  # fmt: skip


@dataclass(frozen=True)
class DatasetInfo:
    """What ``cfsx info`` shows of a dataset: size, encoding, config, label statistics, feedback reach."""

    path: str
    samples: int
    cfs: int
    vectors: np.ndarray
    config: SimulationConfig | None
    created: str
    cfsx_version: str
    image_shape: tuple[int, ...]
    has_lattices: bool
    label_mean: np.ndarray
    label_std: np.ndarray
    label_min: np.ndarray
    label_max: np.ndarray
    reach: ReachSummary | None
    shard: tuple[int, int] | None
    kind: str = "simulated"  # simulated, corrected, store or arrays
    sources: tuple[str, ...] = ()  # the first few sources of corrected images and stores
    h_max: float | None = None

    def summary(self) -> str:
        """What ``cfsx info`` prints: size, encoding, settings, a table of the labels, the feedback's reach."""
        shape = " x ".join(map(str, self.image_shape))
        if self.kind == "corrected":
            shown = ", ".join(self.sources) or "not recorded"
            return (f"{self.path}: {self.samples} images corrected by cfsx correct ({shape}, h_max {self.h_max}), "
                    f"created {self.created or 'at an unknown time'}; sources: {shown}"
                    + (" ..." if self.samples > len(self.sources) else ""))  # fmt: skip
        lines = [
            f"{self.path}: cfsx dataset ({self.kind}), {self.samples} samples, CFS{self.cfs} "
            f"(D = {len(self.vectors)}), images {shape}",
            f"created {self.created} by cfsx {self.cfsx_version}"
            + (f"; shard {self.shard[0]} of {self.shard[1]}" if self.shard else "")
            + ("; lattices stored" if self.has_lattices else ""),
        ]
        if self.config:
            lines += _config_lines(self.config)
        if not self.label_mean.size:
            return "\n".join([*lines, "no labels (/encodings/achieved) in this file"])
        from cfsx.physics.encoding import vector_labels

        lines += ["labels (achieved alpha):", f"{'component':>14} {'mean':>7} {'std':>7} {'min':>7} {'max':>7}"]
        columns = (self.label_mean, self.label_std, self.label_min, self.label_max)
        for i, label in enumerate(vector_labels(self.vectors)):
            lines.append(f"{label:>14} " + " ".join(f"{values[i]:+7.3f}" for values in columns))
        if self.reach:
            lines.append(self.reach.summary())
        return "\n".join(lines)


def _config_lines(config: SimulationConfig) -> list[str]:
    """The simulation settings of a dataset, as ``cfsx info`` shows them."""
    lattice, diffraction, feedback, targets = config.lattice, config.diffraction, config.feedback, config.targets
    lines = [
        f"lattice {lattice.size} x {lattice.size}, c = {lattice.concentration}; lots: {diffraction.n_lots} of "
        f"{diffraction.lot_size} x {diffraction.lot_size}; h_max = {diffraction.h_max}; seed {config.run.seed}"
    ]
    if targets.distribution == "couplings":
        lines.append(f"targets: alpha after {targets.sweeps} sweeps at fixed couplings of strength "
                     f"{targets.coupling_range[0]}-{targets.coupling_range[1]} (log-uniform), no feedback")  # fmt: skip
    else:
        lines.append(f"targets: uniform in [{targets.low}, {targets.high}]")
    lines.append(
        f"feedback (decoding{'' if targets.distribution == 'couplings' else ' and targets'}): "
        f"{feedback.update} update, gain {feedback.gain}, {feedback.sweeps_per_cycle} sweeps/cycle, "
        f"tolerance {feedback.tolerance_for(lattice.size):g}, <= {feedback.max_cycles} cycles"
        + (f", stop after {feedback.stall_cycles} cycles without progress" if feedback.stall_cycles else "")
        + f", |J| <= {feedback.coupling_bound}"
    )
    return lines


def describe(path: str | Path) -> DatasetInfo:
    """Everything ``cfsx info`` shows, read from the file."""
    from cfsx.config import config_from_yaml_text

    with open_dataset(path) as file:
        samples = len(file)
        labels = file.labels[()] if file.labels is not None else np.zeros((samples, 0))
        reach = None
        kind = str(file.attrs.get("kind", "simulated"))
        config_yaml = str(file.attrs.get("config", ""))
        config = config_from_yaml_text(config_yaml) if config_yaml and kind != "corrected" else None
        if samples and labels.shape[1] and file.has("target") and file.has("cycles") and config:
            stops = file.array("stop_reasons")
            tolerance = config.feedback.tolerance_for(config.lattice.size)
            reach = reach_summary(labels, file.array("target")[()], file.array("cycles")[()], tolerance,
                                  None if stops is None else stops[()])  # fmt: skip
        shard = None
        if "shard_index" in file.attrs:
            shard = (int(file.attrs["shard_index"]), int(file.attrs["shard_count"]))
        empty = np.zeros(labels.shape[1])
        return DatasetInfo(
            path=str(path),
            samples=samples,
            cfs=int(file.attrs.get("cfs", 0)),
            vectors=np.asarray(file.attrs.get("vectors", np.zeros((0, 2), int))),
            config=config,
            created=str(file.attrs.get("created", "")),
            cfsx_version=str(file.attrs.get("cfsx_version", "")),
            image_shape=tuple(file.images.shape[1:]),
            has_lattices=file.has("lattices"),
            label_mean=labels.mean(axis=0) if samples else empty,
            label_std=labels.std(axis=0) if samples else empty,
            label_min=labels.min(axis=0) if samples else empty,
            label_max=labels.max(axis=0) if samples else empty,
            reach=reach,
            shard=shard,
            kind=kind,
            sources=tuple(file.texts("sources", limit=3) or ()),
            h_max=float(file.attrs["h_max"]) if "h_max" in file.attrs else None,
        )
