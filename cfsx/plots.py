"""Figures: loss curves, parity and residual plots, histograms, image comparisons.

Every function builds and returns a matplotlib ``Figure``; the caller shows it (a notebook displays it)
or writes it with ``save``. Figures are made without pyplot, so no backend is selected and no global
figure state is kept: the module is safe to import in a notebook, a server or a batch job alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .metrics import scaled_image_r2
from .outputs import atomic_path


def save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG, atomically (a reader never sees half a file); return the path."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    return path


def _subplots(rows: int, columns: int, figsize: tuple[float, float], squeeze: bool = True):
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(rows, columns, squeeze=squeeze)


def _grid(count: int, size: float = 2.6):
    columns = min(count, 5)
    rows = math.ceil(count / columns)
    figure, axes = _subplots(rows, columns, (size * columns, size * rows), squeeze=False)
    for axis in axes.ravel()[count:]:
        axis.set_visible(False)
    return figure, axes.ravel()


def loss_curves(history: Sequence[dict[str, float]], title: str = "") -> Figure:
    """Training and validation loss (log scale) and R2 per epoch."""
    figure, (loss_axis, r2_axis) = _subplots(1, 2, (10, 3.6))
    epochs = [row["epoch"] for row in history]
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        if history and key in history[0]:
            loss_axis.plot(epochs, [row[key] for row in history], label=label)
    loss_axis.set(xlabel="epoch", ylabel="MSE loss", yscale="log", title=title)
    loss_axis.legend()
    for key, label in (("r2", "training"), ("val_r2", "validation")):
        if history and key in history[0]:
            r2_axis.plot(epochs, [row[key] for row in history], label=label)
    r2_axis.set(xlabel="epoch", ylabel="R2", ylim=(max(-0.2, r2_axis.get_ylim()[0]), 1.0))
    r2_axis.legend()
    return figure


def parity(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> Figure:
    """Predicted against true value, one panel per component, with the identity line."""
    figure, axes = _grid(len(labels))
    for i, (axis, label) in enumerate(zip(axes, labels, strict=False)):
        low = min(truth[:, i].min(), predicted[:, i].min())
        high = max(truth[:, i].max(), predicted[:, i].max())
        axis.plot([low, high], [low, high], color="0.5", lw=0.8)
        axis.scatter(truth[:, i], predicted[:, i], s=3, alpha=0.4, lw=0)
        axis.set(title=label, xlabel="true", ylabel="predicted")
    figure.tight_layout()
    return figure


def residuals(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> Figure:
    """Residual (predicted - true) against true value per component, with the mean residual in bins."""
    figure, axes = _grid(len(labels))
    for i, (axis, label) in enumerate(zip(axes, labels, strict=False)):
        residual = predicted[:, i] - truth[:, i]
        axis.axhline(0, color="0.5", lw=0.8)
        axis.scatter(truth[:, i], residual, s=3, alpha=0.4, lw=0)
        edges = np.linspace(truth[:, i].min(), truth[:, i].max(), 11)
        which = np.clip(np.digitize(truth[:, i], edges) - 1, 0, 9)
        means = [residual[which == b].mean() if np.any(which == b) else np.nan for b in range(10)]
        axis.plot((edges[:-1] + edges[1:]) / 2, means, color="C3", lw=1.5, label="binned mean")
        axis.set(title=label, xlabel="true", ylabel="residual")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def component_histograms(values: np.ndarray, labels: Sequence[str], title: str = "") -> Figure:
    """One histogram per encoding component."""
    figure, axes = _grid(len(labels), size=2.2)
    for i, (axis, label) in enumerate(zip(axes, labels, strict=False)):
        axis.hist(values[:, i], bins=40, color="C0")
        axis.set(title=label)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def intensity_histograms(samples: dict[str, np.ndarray], title: str = "pixel intensities") -> Figure:
    """Histograms of pixel intensities and of log10 intensities for one or more image sets."""
    figure, (linear, logarithmic) = _subplots(1, 2, (10, 3.4))
    for name, images in samples.items():
        values = np.asarray(images, dtype=np.float64).ravel()
        linear.hist(values, bins=80, histtype="step", density=True, label=name)
        positive = values[values > 0]
        if positive.size:
            logarithmic.hist(np.log10(positive), bins=80, histtype="step", density=True, label=name)
    linear.set(xlabel="intensity", ylabel="density", yscale="log", title=title)
    logarithmic.set(xlabel="log10 intensity", ylabel="density")
    linear.legend(fontsize=8)
    return figure


def score_histograms(scores: dict[str, np.ndarray], xlabel: str = "image R2") -> Figure:
    """Overlaid histograms of per-image scores (for example the intrinsic floor and the decoded images)."""
    figure, axis = _subplots(1, 1, (6, 3.4))
    finite = [np.asarray(v)[np.isfinite(v)] for v in scores.values()]
    low = min((v.min() for v in finite if v.size), default=0.0)
    bins = np.linspace(max(low, -1.0), 1.0, 41)
    for (name, _), values in zip(scores.items(), finite, strict=True):
        axis.hist(np.clip(values, bins[0], 1.0), bins=bins, histtype="step", lw=1.5, label=f"{name} (n={values.size})")
    axis.set(xlabel=xlabel, ylabel="images")
    axis.legend(fontsize=8)
    return figure


def image_rows(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str]) -> Figure:
    """A table of images (log10 intensity): one row per example, one column per kind of image."""
    n_rows, n_columns = len(rows), len(titles)
    figure, axes = _subplots(n_rows, n_columns, (2.4 * n_columns, 2.4 * n_rows), squeeze=False)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            axis = axes[r, c]
            shown = np.log10(np.maximum(np.asarray(image, dtype=np.float64), 1e-6))
            axis.imshow(shown, origin="lower", cmap="viridis")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(titles[c], fontsize=9)
    figure.tight_layout()
    return figure


def correction_figure(raw, corrected, mask, reference: np.ndarray | None = None) -> Figure:
    """Before and after (log10 intensity), the mask of filled cells, and intensity histograms."""
    raw = np.asarray(raw, dtype=np.float64)
    figure, axes = _subplots(1, 4, (17, 3.8))
    positive = raw[np.isfinite(raw) & (raw > 0)]
    floor = np.percentile(positive, 1) if positive.size else 1e-6
    axes[0].imshow(np.log10(np.maximum(np.nan_to_num(raw, nan=floor), floor)), origin="lower", cmap="viridis")
    axes[0].set_title(f"measured {raw.shape[0]} x {raw.shape[1]} (log10)")
    axes[1].imshow(np.log10(np.maximum(corrected, 1e-6)), origin="lower", cmap="viridis")
    axes[1].set_title(f"corrected {corrected.shape[0]} x {corrected.shape[1]} (log10)")
    axes[2].imshow(mask, origin="lower", cmap="gray_r", vmin=0, vmax=2)
    axes[2].set_title("0 measured, 1 symmetry, 2 inpainted")
    for axis in axes[:3]:
        axis.set_xticks([])
        axis.set_yticks([])
    sets = {"corrected": corrected}
    if reference is not None:
        sets["training data"] = reference
    for name, values in sets.items():
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[values > 0]
        axes[3].hist(np.log10(values), bins=60, histtype="step", density=True, label=name)
    axes[3].set(xlabel="log10 intensity", ylabel="density", title="intensity distribution")
    axes[3].legend(fontsize=8)
    figure.tight_layout()
    return figure


def encoding_matrix(encoding: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """An encoding as the n x n matrix alpha[dx, dy], with alpha(0, 0) = 1 at the origin."""
    vectors = np.asarray(vectors)
    size = int(vectors.max()) + 1
    matrix = np.ones((size, size))
    matrix[vectors[:, 0], vectors[:, 1]] = encoding
    return matrix


def interpretation_figure(observed, lattice, simulated, encoding, uncertainty, vectors, title: str = "") -> Figure:
    """The four panels of an interpretation: observed image, decoded structure, its simulated image
    (log10, on the observation's scale) and the encoding as an n x n matrix (origin cell marked)."""
    observed = np.asarray(observed, dtype=np.float64)
    shown = [np.log10(np.maximum(observed, 1e-6))]
    if simulated is not None:  # on the observation's scale (least squares)
        scale = scaled_image_r2(observed, simulated)[1]
        shown.append(np.log10(np.maximum(scale * np.asarray(simulated, dtype=np.float64), 1e-6)))
    low, high = np.percentile(np.concatenate([s.ravel() for s in shown]), [1, 99.5])
    figure, axes = _subplots(1, 4, (17, 4.2))
    panels = list(zip((axes[0], axes[2]), shown, ("observed (log10)", "decoded image (log10)"), strict=False))
    for axis, image, name in panels:
        picture = axis.imshow(image, origin="lower", cmap="viridis", vmin=low, vmax=high)
        axis.set(title=name, xlabel="k", ylabel="h", xticks=[], yticks=[])
    figure.colorbar(picture, ax=panels[-1][0], fraction=0.046)
    if lattice is not None:
        axes[1].imshow(lattice, cmap="gray_r", interpolation="nearest", origin="lower")
        axes[1].set(title=f"decoded structure {lattice.shape[0]} x {lattice.shape[1]}", xticks=[], yticks=[])
    if simulated is None:
        for axis in axes[1:3]:
            axis.text(0.5, 0.5, "not decoded\n(decode.replicates: 0)", ha="center", va="center")
            axis.set_axis_off()
    matrix = encoding_matrix(encoding, vectors)
    errors = encoding_matrix(uncertainty, vectors)
    shown_matrix = matrix.copy()
    shown_matrix[0, 0] = np.nan  # the origin, alpha(0, 0) = 1 by definition, is drawn grey
    colours = matplotlib.colormaps["RdBu_r"].with_extremes(bad="lightgrey")
    axes[3].imshow(shown_matrix, cmap=colours, vmin=-1, vmax=1, origin="lower")
    for dx in range(matrix.shape[0]):
        for dy in range(matrix.shape[1]):
            text = "origin\n1" if dx == dy == 0 else f"{matrix[dx, dy]:+.3f}\n±{errors[dx, dy]:.3f}"
            axes[3].text(dy, dx, text, ha="center", va="center", fontsize=8)
    axes[3].add_patch(Rectangle((-0.5, -0.5), 1, 1, fill=False, hatch="//", edgecolor="k", linewidth=1.5))
    axes[3].set(title="encoding alpha(dx, dy)", xlabel="dy", ylabel="dx",
                xticks=range(matrix.shape[1]), yticks=range(matrix.shape[0]))  # fmt: skip
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def interpretation(record) -> Figure:
    """``interpretation_figure`` of an Interpretation record (cfsx.results): its first decoded structure and
    image, the final encoding and its uncertainty."""
    from .results import short_name

    decoded = record.decoded
    title = short_name(record.source)
    if decoded is not None:
        title += f": image R2 {decoded.image_r2.mean():.3f}"
    lattice, simulated = (None, None) if decoded is None else (decoded.lattices[0], decoded.images[0])
    return interpretation_figure(record.observed, lattice, simulated, record.encoding, record.uncertainty,
                                 record.vectors, title=title)  # fmt: skip


def zones_figure(raw: np.ndarray, correction, step: int = 1) -> Figure | None:
    """The fold of every measured zone (a ``Correction`` whose provenance has a ``zones`` step): the measured plane
    in its own axes with each zone's lattice point coloured by its agreement with the others, the folded window,
    each zone's agreement and weight against |G|, and the cross-zone consistency per G beside its noise ceiling.
    ``raw`` may be every ``step``-th pixel of the image (``correction.preview``). None when no zones were folded."""
    zones, resample = correction.step("zones"), correction.step("resample")
    if zones is None or resample is None:
        return None
    geometry, window = resample["geometry"], resample["window"]
    names = [name for name in (window.get("axes") or ["rows", "columns"])]
    figure = Figure(figsize=(19.0, 4.8), layout="constrained")
    axes = figure.subplots(1, 4)
    rows, columns = raw.shape[0] * step, raw.shape[1] * step
    origin, per_rlu = geometry["origin"], geometry["pixels_per_rlu"]
    extent = [(-0.5 - origin[1]) / per_rlu[1], (columns - 0.5 - origin[1]) / per_rlu[1],
              (rows - 0.5 - origin[0]) / per_rlu[0], (-0.5 - origin[0]) / per_rlu[0]]  # fmt: skip
    shown = np.where(np.isfinite(raw) & (raw > 0), raw, np.nan)
    low, high = np.nanpercentile(shown, [1, 99]) if np.isfinite(shown).any() else (0, 1)
    picture = axes[0].imshow(shown, extent=extent, cmap="viridis", vmin=low, vmax=high, aspect="equal")
    figure.colorbar(picture, ax=axes[0], fraction=0.046, label="intensity")
    entries = zones["per_zone"]
    agreement = np.array([np.nan if e["agreement"] is None else e["agreement"] for e in entries])
    points = np.array([e["G"] for e in entries])
    marks = axes[0].scatter(points[:, 1], points[:, 0], c=agreement, cmap="RdYlGn", vmin=-1, vmax=1,
                            s=[30 + 120 * e["coverage"] for e in entries], edgecolors="black")  # fmt: skip
    for entry in entries:
        if entry["disagrees"]:
            axes[0].scatter(entry["G"][1], entry["G"][0], marker="x", color="black", s=40)
    figure.colorbar(marks, ax=axes[0], fraction=0.05, label="zone agreement r", location="bottom")
    axes[0].set(xlabel=names[1], ylabel=names[0], title="measured plane, zone points (x: disagrees)")
    folded = axes[1].imshow(correction.image, cmap="viridis", origin="upper")
    figure.colorbar(folded, ax=axes[1], fraction=0.046, label="normalised intensity")
    axes[1].set(title=f"folded window ({zones['zones']} zones, {100 * zones['cells_measured']:.0f} % measured)",
                xlabel="k (cells)", ylabel="h (cells)")  # fmt: skip
    q = np.hypot(points[:, 0], points[:, 1])
    axes[2].scatter(q, agreement, c="tab:blue", label="agreement r with the other zones")
    axes[2].scatter(q, [e["weight"] for e in entries], c="tab:orange", marker="s", label="weight 1/max(1, chi2)")
    axes[2].axhline(0, color="grey", lw=0.5)
    axes[2].set(xlabel="|G| (r.l.u.)", ylim=(-1.05, 1.05), title="per zone")
    axes[2].legend(fontsize=8, loc="lower left")
    consistency = zones["consistency"]
    labels = [entry.get("name", str(entry["G"])) for entry in consistency]
    x = np.arange(len(consistency))
    axes[3].bar(x - 0.2, [e["correlation"] or 0 for e in consistency], 0.4, label="corr I(Q), I(Q+G)")
    axes[3].bar(x + 0.2, [e["ceiling"] for e in consistency], 0.4, label="noise ceiling", color="lightgrey")
    axes[3].set_xticks(x, [f"G: {label}" for label in labels], rotation=20, fontsize=8)
    axes[3].axhline(0, color="grey", lw=0.5)
    axes[3].set(ylim=(-1.05, 1.05), title="cross-zone consistency")
    axes[3].legend(fontsize=8, loc="lower left")
    return figure
