"""Figures: loss curves, parity and residual plots, histograms, image comparisons.

Every function builds and returns a matplotlib ``Figure``; the caller shows it (a notebook displays it)
or writes it with ``save``. Figures are made without pyplot, so no backend is selected and no global
figure state is kept: the module is safe to import in a notebook, a server or a batch job alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cfsx.io.outputs import atomic_path


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


@dataclass(frozen=True)
class InterpretationPanels:
    """What an interpretation figure shows of one image: the observed image and the final answer's model image
    (fitted to it) on the grid h, k in [-h_max, h_max), the cells not measured (mask != 0), a decoded structure,
    the encoding with its uncertainty, and the title (with R1, R2 and the verdict)."""

    observed: np.ndarray
    model: np.ndarray | None
    h_max: float
    mask: np.ndarray | None
    lattice: np.ndarray | None
    encoding: np.ndarray
    uncertainty: np.ndarray
    vectors: np.ndarray
    title: str = ""
    model_name: str = "model image"


def interpretation_figure(panels: InterpretationPanels) -> Figure:
    """Observed | model | residual (observed and model on one colour scale, the residual on a symmetric one, axes in
    r.l.u.; cells not measured hatched), the decoded structure and the encoding as an n x n matrix. The panels
    wrap onto two rows (a figure narrow enough for a phone stacks them)."""
    observed = np.asarray(panels.observed, dtype=np.float64)
    figure = Figure(figsize=(15.5, 8.4), layout="constrained")
    axes = figure.subplots(2, 3).ravel()
    extent = [-panels.h_max, panels.h_max, -panels.h_max, panels.h_max]  # columns k, rows h; origin lower
    model = None if panels.model is None else np.asarray(panels.model, dtype=np.float64)
    together = observed if model is None else np.concatenate([observed.ravel(), model.ravel()])
    low, high = np.percentile(together, [0.5, 99.5])
    unmeasured = None if panels.mask is None else np.ma.masked_where(np.asarray(panels.mask) == 0,
                                                                       np.ones(observed.shape))  # fmt: skip
    for axis, image, name in ((axes[0], observed, "observed"), (axes[1], model, panels.model_name)):
        if image is None:
            axis.text(0.5, 0.5, "no model image", ha="center", va="center")
            axis.set_axis_off()
            continue
        picture = axis.imshow(image, origin="lower", cmap="viridis", vmin=low, vmax=high, extent=extent)
        figure.colorbar(picture, ax=axis, fraction=0.046, label="intensity")
        axis.set(title=name, xlabel="k (r.l.u.)", ylabel="h (r.l.u.)")
        if unmeasured is not None and unmeasured.count():
            axis.contourf(np.linspace(*extent[:2], observed.shape[1]), np.linspace(*extent[2:], observed.shape[0]),
                          unmeasured, levels=[0.5, 1.5], colors="none", hatches=["///"])  # fmt: skip
    if model is not None:
        residual = observed - model
        bound = float(np.percentile(np.abs(residual), 99.5)) or 1.0
        picture = axes[2].imshow(residual, origin="lower", cmap="RdBu_r", vmin=-bound, vmax=bound, extent=extent)
        figure.colorbar(picture, ax=axes[2], fraction=0.046, label="observed - model")
        axes[2].set(title="residual", xlabel="k (r.l.u.)", ylabel="h (r.l.u.)")
    else:
        axes[2].set_axis_off()
    if panels.lattice is not None:
        lattice = panels.lattice
        axes[3].imshow(lattice, cmap="gray_r", interpolation="nearest", origin="lower")
        axes[3].set(title=f"a decoded structure {lattice.shape[0]} x {lattice.shape[1]}", xlabel="y", ylabel="x")
    else:
        axes[3].text(0.5, 0.5, "not decoded\n(decode.replicates: 0)", ha="center", va="center")
        axes[3].set_axis_off()
    matrix = encoding_matrix(panels.encoding, panels.vectors)
    errors = encoding_matrix(panels.uncertainty, panels.vectors)
    shown_matrix = matrix.copy()
    shown_matrix[0, 0] = np.nan  # the origin, alpha(0, 0) = 1 by definition, is drawn grey
    colours = matplotlib.colormaps["RdBu_r"].with_extremes(bad="lightgrey")
    axes[4].imshow(shown_matrix, cmap=colours, vmin=-1, vmax=1, origin="lower")
    for dx in range(matrix.shape[0]):
        for dy in range(matrix.shape[1]):
            text = "origin\n1" if dx == dy == 0 else f"{matrix[dx, dy]:+.3f}\n±{errors[dx, dy]:.3f}"
            axes[4].text(dy, dx, text, ha="center", va="center", fontsize=8)
    axes[4].add_patch(Rectangle((-0.5, -0.5), 1, 1, fill=False, hatch="//", edgecolor="k", linewidth=1.5))
    axes[4].set(title="encoding alpha(dx, dy)", xlabel="dy", ylabel="dx",
                xticks=range(matrix.shape[1]), yticks=range(matrix.shape[0]))  # fmt: skip
    axes[5].set_axis_off()
    if panels.title:
        figure.suptitle(panels.title, fontsize=10)
    return figure


def interpretation(record) -> Figure:
    """``interpretation_figure`` of an Interpretation record (cfsx.interpretation.results): the final answer's model
    image and
    its residual, a decoded structure, the encoding and its uncertainty; R1, R2 and the verdict in the title."""
    from cfsx.io.readers import short_name

    title = short_name(record.source)
    fit = (record.fits or {}).get(record.final_source)
    quality = None if fit is None else (fit.structure or fit.analytic)
    kind = "structure image" if fit is not None and fit.structure is not None else "analytic image"
    if quality is not None:
        title += f" ({record.final_source.replace('_', ' ')}, {kind}): R1 {quality.r1:.3f}, R2 {quality.r2:.3f}"
        if quality.chi2 is not None:
            title += f", chi2 {quality.chi2:.2f}"
    if record.verdict is not None:
        title += f"\n{record.verdict.line()}"
    lattice = None if record.decoded is None else record.decoded.lattices[0]
    return interpretation_figure(InterpretationPanels(
        record.observed, record.model_image, record.provenance.model.h_max, record.mask, lattice, record.encoding,
        record.uncertainty, record.vectors, _wrapped(title, 150), f"model: {kind}"))  # fmt: skip


def _wrapped(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def zones_figure(raw: np.ndarray, correction, step: int = 1) -> Figure | None:
    """The fold of every measured zone (a ``Correction`` whose provenance has a ``zones`` step): the measured plane
    in its own axes with each zone's lattice point coloured by its agreement with the others, the folded window,
    each zone's agreement and weight against |G|, and the cross-zone consistency per G beside its noise ceiling.
    ``raw`` may be every ``step``-th pixel of the image (``correction.preview``). None when no zones were folded."""
    zones, resample = correction.step("zones"), correction.step("resample")
    if zones is None or resample is None:
        return None
    geometry, window = resample.geometry, resample.window
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
    entries = zones.per_zone
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
    axes[1].set(title=f"folded window ({zones.details['zones']} zones, {100 * zones.details['cells_measured']:.0f} % "
                      "measured)",
                xlabel="k (cells)", ylabel="h (cells)")  # fmt: skip
    q = np.hypot(points[:, 0], points[:, 1])
    axes[2].scatter(q, agreement, c="tab:blue", label="agreement r with the other zones")
    axes[2].scatter(q, [e["weight"] for e in entries], c="tab:orange", marker="s", label="weight 1/max(1, chi2)")
    axes[2].axhline(0, color="grey", lw=0.5)
    axes[2].set(xlabel="|G| (r.l.u.)", ylim=(-1.05, 1.05), title="per zone")
    axes[2].legend(fontsize=8, loc="lower left")
    consistency = zones.consistency
    labels = [entry.get("name", str(entry["G"])) for entry in consistency]
    x = np.arange(len(consistency))
    axes[3].bar(x - 0.2, [e["correlation"] or 0 for e in consistency], 0.4, label="corr I(Q), I(Q+G)")
    axes[3].bar(x + 0.2, [e["ceiling"] for e in consistency], 0.4, label="noise ceiling", color="lightgrey")
    axes[3].set_xticks(x, [f"G: {label}" for label in labels], rotation=20, fontsize=8)
    axes[3].axhline(0, color="grey", lw=0.5)
    axes[3].set(ylim=(-1.05, 1.05), title="cross-zone consistency")
    axes[3].legend(fontsize=8, loc="lower left")
    return figure
