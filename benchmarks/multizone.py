"""Multi-zone detector renders: every measured Brillouin zone folded (``geometry.zones=all``) against the window
around h = k = 0 (``geometry.zones=centre``), scored by the CNNs and the least squares (issue 25).

The structures are the generalisation benchmark's (benchmarks/generalisation_data.py; one group, made first when
missing). Each case's lattice is rendered as the exact all-origins lot average (``render_detector``) on a calibrated
SIZE x SIZE detector (default 384 x 384 at 64 pixels per r.l.u., h = k = 0 at the detector's centre, pixel
(191.5, 191.5): the pixels cover h, k in [-3, 3], 7 x 7 zones, the outer ones halves; a centre between pixels puts
each cell's 2 x 2 pixels symmetrically about the cell's centre, where an integer origin puts pixel centres on the
cells' edges, which the correction's binning gives to the upper cell, shifting the image by a quarter cell).
Then, drawn per case and seeded: multiplied by a Debye-Waller falloff exp(-B |Q|^2) (B uniform in --falloff-b),
Poisson-counted at C counts per pixel at the image's mean level (C log-uniform in --counts) and cut by detector gaps
(zero stripes, also given as the mask file, as the benchmark's detector renders are; ``mask.zeros=values``, so that
zero counts stay measurements). No Bragg peaks (``bragg.enabled=false``): counting noise dominates.

Per case the sets scored (alpha MAE per image against the lattice's measured alpha, as the benchmark scores):
  clean         the all-origins image on the 64 x 64 training window (no noise, falloff or gaps): in a group of
                K = all (the default n64-l32-kall) exactly the benchmark's clean image;
  render/centre, render/all   the clean render (no falloff, noise or gaps) through correct: the correction alone;
  noisy/centre  (b) the noisy render corrected with geometry.zones=centre (the window around h = k = 0);
  noisy/all     (c) the same corrected with geometry.zones=all (every zone folded).
Methods: each model (--model, default the built-in general-cfs2, -cfs3, -cfs4; ``predict_encodings`` with the
transposed-image average, as interpret runs it) and the least squares (cfsx.physics.inversion) with no lot window and
told the group's true L. Goals (issue 25): MAE(c) <= 0.7 MAE(b) and MAE(c) - MAE(clean) <= 0.5 (MAE(b) - MAE(clean)).
Also recorded per image: the fold's falloff fit, noise estimate and per-zone chi2 (which zones it flagged).

Seeds: case i of group g draws its corruption from numpy SeedSequence([seed, g, i, 5]) (stream 5: the generator
uses 0-4), seed = the group file's; the same numbers every run, whatever --workers.

Writes WORK/multizone.json (every per-image score and fold record), the marked block "multizone" of --output
and FIGURES/multizone.png (one example). Usage:
    python benchmarks/multizone.py [--data bench-output/generalisation-data] [--group n64-l32-kall] [--cases 200]
        [--work bench-output/multizone] [--output docs/generalisation.md] [--figures docs/generalisation]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import generalisation_data as gd
import numpy as np
from generalisation_methods import Inversions, Model
from harness import (
    add_figures,
    add_output,
    correction_config,
    fmt,
    generate_groups,
    invocation,
    markdown_table,
    pyplot,
    replace_block,
    spawn_pool,
    timed_line,
)

STREAM_MULTIZONE = 5  # generalisation_data's streams are 0-4
DEFAULT_GROUP = "n64-l32-kall"
DEFAULT_MODELS = ("general-cfs2", "general-cfs3", "general-cfs4")
SETS = ("clean", "render/centre", "render/all", "noisy/centre", "noisy/all")
SET_NAMES = {
    "clean": "(a) clean",
    "render/centre": "clean render, zones=centre",
    "render/all": "clean render, zones=all",
    "noisy/centre": "(b) noisy, zones=centre",
    "noisy/all": "(c) noisy, zones=all",
}
GOAL_RATIO, GOAL_EXCESS = 0.7, 0.5
ORDERED = 0.5  # max |alpha(v)| above this: a strongly ordered lattice (sharp diffuse peaks)


# --- the images ---------------------------------------------------------------------------------


def draw(seed: int, group: int, case: int, settings: dict) -> dict:
    """The corruption of one case: falloff B, counts per pixel at the mean level, Poisson and gap seeds."""
    rng = np.random.default_rng(gd.seed_sequence(seed, group, case, STREAM_MULTIZONE))
    low, high = settings["counts"]
    return {
        "b": float(rng.uniform(*settings["falloff_b"])),
        "counts": float(np.exp(rng.uniform(np.log(low), np.log(high)))),
        "poisson_seed": int(rng.integers(2**63)),
        "gap_seed": int(rng.integers(2**63)),
    }


def axes(settings: dict) -> tuple[np.ndarray, np.ndarray]:
    return gd.detector_axes(settings["pixels_per_rlu"], settings["origin"], settings["size"])


def render(lattice: np.ndarray, lot_size: int, drawn: dict, settings: dict) -> tuple[np.ndarray, ...]:
    """(clean render, noisy render, gap mask, falloff) of one case on the detector."""
    h, k = axes(settings)
    clean = gd.render_detector(lattice, lot_size, settings["pixels_per_rlu"], settings["origin"], settings["size"])
    falloff = np.exp(-drawn["b"] * (h[:, None] ** 2 + k[None, :] ** 2))
    rows, columns, width = settings["gaps"]
    steps = [
        ("poisson", {"counts": drawn["counts"], "seed": drawn["poisson_seed"]}),
        ("gaps", {"rows": rows, "columns": columns, "width": width, "seed": drawn["gap_seed"]}),
    ]
    noisy, mask = gd.corrupt(clean * falloff, h, k, 1.0 / settings["pixels_per_rlu"], steps)
    return clean, noisy, mask, falloff


def overrides(settings: dict, zones: str) -> list[str]:
    origin, ppr = settings["origin"], settings["pixels_per_rlu"]
    return [
        f"geometry.origin=[{origin[0]}, {origin[1]}]",
        f"geometry.pixels_per_rlu=[{ppr}, {ppr}]",
        f"geometry.zones={zones}",
        "bragg.enabled=false",
        "mask.zeros=values",
    ]


def fold_record(zones: dict, drawn: dict, expected: np.ndarray, mask: np.ndarray, settings: dict) -> dict:
    """What the fold of the noisy render found, against what is known: the falloff fit (log f(q) - log f(0) at
    q = 1..4 r.l.u., fitted and true), its noise estimate against the true Poisson noise of the pixels (median and
    rms over the valid pixels, in the fold's units: image / fitted falloff), and every zone's chi2 and weight."""
    coefficients = zones["falloff"]["coefficients"]
    q = np.array([1.0, 2.0, 3.0, 4.0])
    fitted = (np.polynomial.polynomial.polyval(q, coefficients) - coefficients[0]) if coefficients else 0.0 * q
    h, k = axes(settings)
    q_pixel = np.hypot(h[:, None], k[None, :])
    scale = np.exp(np.polynomial.polynomial.polyval(q_pixel, coefficients)) if coefficients else np.ones_like(q_pixel)
    flux = drawn["counts"] / float(expected.mean())  # as generalisation_data.corrupt counts
    sigma = np.sqrt(np.clip(expected, 0.0, None) / flux) / scale  # a pixel's Poisson noise, over the fitted falloff
    valid = mask == 0
    return {
        "falloff_coefficients": coefficients,
        "falloff_fitted": [float(v) for v in fitted],
        "falloff_true": [float(-drawn["b"] * v**2) for v in q],
        "noise": zones["noise"],
        "true_noise_median": float(np.median(sigma[valid])),
        "true_noise_rms": float(np.sqrt(np.mean(sigma[valid] ** 2))),
        "zones": [
            {
                "G": entry["G"],
                "chi2": entry["chi2"],
                "weight": entry["weight"],
                "coverage": entry["coverage"],
                "disagrees": entry["disagrees"],
            }
            for entry in zones["per_zone"]
        ],
        "disagreeing": zones["disagreeing"],
        "consistency": [entry.get("consistency") for entry in zones["consistency"]],
    }


def case_job(job: tuple) -> dict:
    """Render and correct one case (in a worker): the four corrected images, failures, the fold's record."""
    from cfsx.correction import correct_image
    from cfsx.errors import CfsxError

    case, lattice, lot_size, drawn, settings = job
    clean, noisy, mask, falloff = render(lattice, lot_size, drawn, settings)
    out = {"case": case, "images": {}, "failures": []}
    for name, image, extra in (("render", clean, None), ("noisy", noisy, mask > 0)):
        for zones in ("centre", "all"):
            key = f"{name}/{zones}"
            try:
                corrected = correct_image(image, correction_config(tuple(overrides(settings, zones))), extra_mask=extra)
            except CfsxError as error:
                out["images"][key] = np.full((64, 64), np.nan, dtype=np.float32)
                out["failures"].append(f"{key}: {error}")
                continue
            out["images"][key] = corrected.image
            if key == "noisy/all":
                out["fold"] = fold_record(corrected.step("zones").to_plain(), drawn, clean * falloff, mask, settings)
    out["masked_fraction"] = float((mask > 0).mean())
    return out


def source_hashes() -> dict[str, str]:
    """sha256 (first 16 hex digits) of the cfsx modules the correction runs: the fold's code is in flux."""
    import hashlib

    import cfsx

    folder = Path(cfsx.__file__).parent
    names = ("correction.py", "zones.py", "geometry.py", "symmetry.py", "config.py")
    return {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()[:16]
        for name in names
        if (folder / name).exists()
    }


# --- data and models --------------------------------------------------------------------------------


def ensure_group(folder: Path, group: str, workers: int) -> Path:
    """The group's file of the generalisation benchmark data, generated (about 30 s) when missing."""
    path = folder / f"{group}.h5"
    if not path.exists():
        print(f"generating the benchmark data of {group} in {folder}", flush=True)
        generate_groups(folder, [group], workers)
    return path


def load_models(names: list[str]) -> list:
    from cfsx.learning.builtin import resolve_model

    models = []
    for name in names:
        model = Model(resolve_model(name), set())
        model.name = Path(name).stem if Path(name).suffix else name
        models.append(model)
    return models


def predictions(models: list, sets: dict[str, np.ndarray], lot_size: int, batch_size: int) -> dict[str, dict]:
    """method -> set -> (S, D) alpha estimates: each model, and the least squares per CFS (no window, true L)."""
    from cfsx.physics.inversion import NO_WINDOW

    names = list(sets)
    stacked = np.nan_to_num(np.concatenate([sets[name] for name in names]).astype(np.float32))
    bounds = np.cumsum([0] + [len(sets[name]) for name in names])

    def split(flat: np.ndarray) -> dict[str, np.ndarray]:
        return {name: flat[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}

    found = {}
    inversions = Inversions()
    for model in models:
        found[model.name] = split(model.predict(stacked, batch_size))
    for cfs in sorted({model.cfs for model in models}):
        found[f"LS-CFS{cfs} no window"] = split(inversions(cfs, NO_WINDOW, stacked))
        found[f"LS-CFS{cfs} true L"] = split(inversions(cfs, lot_size, stacked))
    return found


def method_cfs(method: str, models: list) -> int:
    model = next((model for model in models if model.name == method), None)
    return model.cfs if model else int(method.split("CFS")[1][0])


def per_image_mae(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """MAE over components per image; a non-finite estimate counts as alpha = 0 (as generalisation.score)."""
    return np.abs(np.where(np.isfinite(estimate), estimate, 0.0) - truth).mean(axis=1)


# --- the report -------------------------------------------------------------------------------------


def summarise(maes: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
    """Per method: the mean MAE of each set, the goals' two ratios, and how often (c) beats (b) per image."""
    out = {}
    for method, per_set in maes.items():
        mean = {name: float(np.mean(values)) for name, values in per_set.items()}
        clean, centre, everywhere = mean["clean"], mean["noisy/centre"], mean["noisy/all"]
        ratio = everywhere / centre
        excess = (everywhere - clean) / (centre - clean) if centre != clean else float("nan")
        median = {name: float(np.median(values)) for name, values in per_set.items()}
        out[method] = {
            "mean": mean,
            "median": median,
            "median_ratio": median["noisy/all"] / median["noisy/centre"],
            "median_excess_ratio": (median["noisy/all"] - median["clean"]) / (median["noisy/centre"] - median["clean"])
            if median["noisy/centre"] != median["clean"]
            else float("nan"),
            "ratio": ratio,
            "excess_ratio": excess,
            "ratio_met": bool(ratio <= GOAL_RATIO),
            "excess_met": bool(excess <= GOAL_EXCESS),
            "c_beats_b": float(np.mean(per_set["noisy/all"] < per_set["noisy/centre"])),
            # the best (c) / (b) can be: every bit of the noise penalty removed, down to the clean image
            "floor_ratio": clean / centre,
            # the noise penalty left against the noise-free render through the same correction (the detector's floor)
            "render_excess_ratio": (everywhere - mean["render/all"]) / (centre - mean["render/centre"])
            if centre != mean["render/centre"]
            else float("nan"),
        }
    return out


def split_table(maes: dict[str, dict[str, np.ndarray]], ordered: np.ndarray, methods: list[str]) -> str:
    """The goals' ratios (of mean MAEs) on the strongly ordered images and on the others, with their (a), (b), (c)."""
    rows = []
    for method in methods:
        cells = [method]
        for subset in (ordered, ~ordered):
            clean, centre, everywhere = (float(np.mean(maes[method][name][subset])) for name in
                                         ("clean", "noisy/centre", "noisy/all"))  # fmt: skip
            excess = (everywhere - clean) / (centre - clean) if centre != clean else float("nan")
            cells += [f"{fmt(clean)} / {fmt(centre)} / {fmt(everywhere)}", fmt(everywhere / centre, 2), fmt(excess, 2)]
        rows.append(tuple(cells))
    groups = (f"{int(ordered.sum())} strongly ordered", f"{int((~ordered).sum())} other")
    header = ["method"]
    for group in groups:
        header += [f"{group}: (a) / (b) / (c)", "(c) / (b)", "((c) - (a)) / ((b) - (a))"]
    return markdown_table(tuple(header), rows)


def fold_summary(folds: list[dict]) -> dict:
    """The fold's behaviour over all noisy images: falloff fit error, noise estimate, chi2 by zone ring, flags."""
    fitted = np.array([fold["falloff_fitted"] for fold in folds])
    true = np.array([fold["falloff_true"] for fold in folds])
    noise_ratio = np.array([fold["noise"] / fold["true_noise_median"] for fold in folds])
    rings: dict[int, list[float]] = {}
    flagged, flagged_chi2 = [], []
    for fold in folds:
        count = 0
        for zone in fold["zones"]:
            ring = int(max(abs(zone["G"][0]), abs(zone["G"][1])))
            if zone["chi2"] is not None:
                rings.setdefault(ring, []).append(zone["chi2"])
            if zone["disagrees"]:
                count += 1
                flagged_chi2.append(zone["chi2"])
        flagged.append(count)
    b = np.array([fold["b"] for fold in folds])
    counts = np.array([fold["counts"] for fold in folds])
    ordered = np.array([fold["max_alpha"] > ORDERED for fold in folds])
    flagged = np.array(flagged)
    zones_total = sum(len(fold["zones"]) for fold in folds)
    return {
        "falloff_error_median": [float(v) for v in np.median(fitted - true, axis=0)],
        "falloff_error_p90_abs": [float(v) for v in np.percentile(np.abs(fitted - true), 90, axis=0)],
        "noise_over_true_median": [float(np.percentile(noise_ratio, p)) for p in (10, 50, 90)],
        "chi2_by_ring": {
            str(ring): [float(np.percentile(values, p)) for p in (50, 90, 99)] + [float(np.max(values))]
            for ring, values in sorted(rings.items())
        },
        "flagged_zones": int(flagged.sum()),
        "zones": int(zones_total),
        "images_with_flags": int((flagged > 0).sum()),
        "flagged_chi2": [float(np.percentile(flagged_chi2, p)) for p in (50, 90)] + [float(max(flagged_chi2))]
        if flagged_chi2
        else [],
        "images_with_flags_ordered": [int((flagged[ordered] > 0).sum()), int(ordered.sum())],
        "images_with_flags_other": [int((flagged[~ordered] > 0).sum()), int((~ordered).sum())],
        "flags_by_b": {
            label: float(flagged[mask].mean()) if mask.any() else float("nan")
            for label, mask in (("B < 0.06", b < 0.06), ("B >= 0.06", b >= 0.06))
        },
        "flags_by_counts": {
            label: float(flagged[mask].mean()) if mask.any() else float("nan")
            for label, mask in (("C < 3.16", counts < 10**0.5), ("C >= 3.16", counts >= 10**0.5))
        },
        "consistency_median": float(np.median([c for fold in folds for c in fold["consistency"] if c is not None])),
    }


def results_table(summary: dict, methods: list[str]) -> str:
    header = (
        "method",
        *(SET_NAMES[name] for name in SETS),
        "(c) / (b) (goal <= 0.7)",
        "((c) - (a)) / ((b) - (a)) (goal <= 0.5)",
        "images with (c) < (b)",
        "(a) / (b): the best (c) / (b) can be",
        "((c) - render) / ((b) - render)",
    )
    rows = []
    for method in methods:
        entry = summary[method]
        rows.append(
            (
                method,
                *(fmt(entry["mean"][name]) for name in SETS),
                f"{fmt(entry['ratio'], 2)} {'met' if entry['ratio_met'] else 'not met'}",
                f"{fmt(entry['excess_ratio'], 2)} {'met' if entry['excess_met'] else 'not met'}",
                f"{100 * entry['c_beats_b']:.0f} %",
                fmt(entry["floor_ratio"], 2),
                fmt(entry["render_excess_ratio"], 2),
            )
        )
    return markdown_table(header, rows)


def median_table(summary: dict, methods: list[str]) -> str:
    header = (
        "method",
        *(SET_NAMES[name] for name in ("clean", "noisy/centre", "noisy/all")),
        "(c) / (b)",
        "((c) - (a)) / ((b) - (a))",
    )
    rows = [
        (
            method,
            *(fmt(summary[method]["median"][name]) for name in ("clean", "noisy/centre", "noisy/all")),
            fmt(summary[method]["median_ratio"], 2),
            fmt(summary[method]["median_excess_ratio"], 2),
        )
        for method in methods
    ]
    return markdown_table(header, rows)


def fold_text(fold: dict, cases: int) -> str:
    error = ", ".join(f"{fmt(v, 3)}" for v in fold["falloff_error_median"])
    spread = ", ".join(f"{fmt(v, 3)}" for v in fold["falloff_error_p90_abs"])
    noise = ", ".join(fmt(v, 2) for v in fold["noise_over_true_median"])
    rings = "; ".join(
        f"ring {ring}: {', '.join(fmt(v, 2) for v in values)}" for ring, values in fold["chi2_by_ring"].items()
    )
    flagged = (
        f"{fold['flagged_zones']} of {fold['zones']} zones in {fold['images_with_flags']} of {cases} images "
        f"(chi2 of the flagged: median, 90th percentile, max {', '.join(fmt(v, 1) for v in fold['flagged_chi2'])}; "
        f"flags per image {', '.join(f'{k}: {fmt(v, 2)}' for k, v in fold['flags_by_b'].items())}; "
        f"{', '.join(f'{k}: {fmt(v, 2)}' for k, v in fold['flags_by_counts'].items())}); images with flags: "
        f"{fold['images_with_flags_ordered'][0]} of the {fold['images_with_flags_ordered'][1]} strongly ordered "
        f"(max |alpha(v)| > {ORDERED}, v != 0), {fold['images_with_flags_other'][0]} of the other "
        f"{fold['images_with_flags_other'][1]}"
        if fold["flagged_zones"]
        else f"none of {fold['zones']} zones"
    )
    return f"""\
The fold on the noisy renders (zones=all; `zones` step of the provenance, against what is known of the images):
- falloff fit: fitted minus true log f(q) - log f(0) at |Q| = 1, 2, 3, 4 r.l.u., median {error} (90th percentile
  of the absolute error {spread});
- noise estimate over the true Poisson noise of the pixels (median over the valid pixels, in the fold's units):
  10th, 50th, 90th percentile over images {noise};
- zone chi2 (each zone against the fold of the others, in units of the noise estimate) by ring max(|G_h|, |G_k|):
  median, 90th, 99th percentile, max: {rings};
- zones flagged as disagreeing (chi2 > 4): {flagged};
- cross-zone consistency (correlation of I(Q) and I(Q + G) over its noise ceiling), median
  {fmt(fold["consistency_median"], 3)}."""


def figure_example(example: dict, settings: dict, path: Path) -> None:
    plt = pyplot()
    h, k = axes(settings)
    step = 1.0 / settings["pixels_per_rlu"]
    detector_extent = (k[0] - step / 2, k[-1] + step / 2, h[-1] + step / 2, h[0] - step / 2)
    window = (-1.0 - 1 / 64, 1.0 - 1 / 64, 1.0 - 1 / 64, -1.0 - 1 / 64)
    panels = (
        ("noisy render", example["noisy"], detector_extent),
        ("(b) zones=centre", example["noisy/centre"], window),
        ("(c) zones=all", example["noisy/all"], window),
        ("(a) clean", example["clean"], window),
    )
    figure, axes_ = plt.subplots(1, 4, figsize=(16, 4.3))
    window_range = np.nanpercentile(example["clean"], (1, 99.5))
    for axis, (title, image, extent) in zip(axes_, panels, strict=True):
        shown = np.where(np.isfinite(image), image, np.nan)
        low, high = window_range if extent == window else np.nanpercentile(shown, (1, 99.5))
        picture = axis.imshow(shown, extent=extent, vmin=low, vmax=high, cmap="viridis", interpolation="nearest")
        axis.set_title(f"{title}\n{example['titles'].get(title, '')}", fontsize=9)
        axis.set_xlabel("k (r.l.u.)")
        axis.set_ylabel("h (r.l.u.)")
        figure.colorbar(picture, ax=axis, fraction=0.046, pad=0.04)
    corner = -1.0 - 1 / 64  # the window's edge: cells of 1/32 r.l.u. centred on -1 + m / 32
    axes_[0].add_patch(plt.Rectangle((corner, corner), 2, 2, fill=False, ec="w", lw=0.8, ls="--"))
    figure.suptitle(example["suptitle"], fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write_report(args, summary, split, fold, methods, settings, attrs, cases, seconds, command, figure) -> None:
    relative = os.path.relpath(args.figures, args.output.parent)
    origin, ppr, size = settings["origin"], settings["pixels_per_rlu"], settings["size"]
    h_low, h_high = -origin[0] / ppr, (size - 1 - origin[0]) / ppr
    rows, columns, width = settings["gaps"]
    clean_note = (
        "the benchmark's clean image of this group"
        if attrs["K"] == "all"
        else f"not the group's clean image ({attrs['K']} lots): the lot-noise-free all-origins image"
    )
    ok = {m: summary[m]["ratio_met"] and summary[m]["excess_met"] for m in methods}
    met = ", ".join(m for m in methods if ok[m]) or "none"
    text = f"""\
{timed_line(command, seconds)}
(with the group's data present; `make multizone`, benchmarks/multizone.py).

Issue 25: does folding every measured Brillouin zone onto the training window (`cfsx correct`, calibrated,
`geometry.zones=all`) read alpha better off a noisy wide detector image than the window around h = k = 0 alone
(`geometry.zones=centre`)? The structures: the first {cases} cases of the benchmark group `{attrs["name"]}` (N =
{attrs["N"]}, L = {attrs["L"]}, K = {attrs["K"]}; seed {attrs["seed"]}). Each lattice is rendered as the exact
all-origins lot average (`render_detector`) on a {size} x {size} detector at {ppr:g} pixels per r.l.u. with h = k = 0
at pixel {list(origin)} (pixel centres at h, k in [{h_low:g}, {h_high:g}]: {size / ppr:g} x {size / ppr:g} zone widths,
the outermost zones halves; a centre between pixels puts the 2 x 2 pixels of each 64 x 64 cell symmetrically about
its centre: with an integer origin the pixel centres fall on the cells' edges, which the binning gives to the upper
cell, a quarter-cell shift), then, drawn per case (seeded: SeedSequence([seed, group, case, 5])): multiplied by a
Debye-Waller falloff exp(-B |Q|^2), B uniform in {list(settings["falloff_b"])} r.l.u.^-2; Poisson-counted at C
counts per pixel at the image's mean level, C log-uniform in {list(settings["counts"])}; {rows} row and {columns}
column gaps of {width} px (zeros, given to the correction as the mask file too, with `mask.zeros=values` so that
zero counts stay measurements, as for the benchmark's detector renders). No Bragg peaks: counting noise dominates.

Corrections: `correct_image` with `geometry.origin={list(origin)}`, `geometry.pixels_per_rlu=[{ppr:g}, {ppr:g}]`,
`bragg.enabled=false`, `mask.zeros=values` and `geometry.zones=centre` (b) or `all` (c); otherwise the built-in
`correct` config. (a) "clean" is the all-origins image of the same lattice on the 64 x 64 window h, k in [-1, 1)
({clean_note}). "Clean render" rows put the render without falloff, noise or gaps through the same corrections:
what the correction alone does to the signal (pixels area-averaged into cells, folded). Alpha MAE per image against
the lattice's measured alpha, averaged over the {cases} images. Methods: the built-in models (`predict_encodings`
with the transposed-image average, as `cfsx interpret` runs them) and the least squares (cfsx.physics.inversion)
without a
lot window (what interpret uses) and told the true L = {attrs["L"]}.

Goals of issue 25 (measured, not tuned for): MAE(c) <= {GOAL_RATIO} x MAE(b), and MAE(c) - MAE(a) <= {GOAL_EXCESS} x
(MAE(b) - MAE(a)). Both met for: {met}.

{results_table(summary, methods)}

"(a) / (b)" is the ratio (c) / (b) would have if the fold removed the whole noise penalty: where it is above 0.7
the first goal asks (c) to beat the clean image. The last column measures the penalty left against the noise-free
render through the same correction ("clean render" rows, which differ from (a) by the detector's sampling: each cell
the mean of 2 x 2 pixels, not one point). The mean is pulled by the few images a method reads badly even when clean
(strongly ordered lattices): the same with the median MAE over images (ratios of medians):

{median_table(summary, methods)}

By how ordered the lattice is (max |alpha(v)| over 0 < |v| <= 8 above {ORDERED}: sharp diffuse peaks), mean MAE:

{split}

{fold_text(fold, cases)}

![multi-zone example]({relative}/{figure})

Every per-image score and fold record: `multizone.json` in the work directory (`{args.work}`)."""
    heading = "## Multi-zone detector renders: zones=all against zones=centre"  # a new block's, at the end
    replace_block(args.output, "multizone", text, title="# Generalisation benchmark\n", heading=heading)


# --- command line -----------------------------------------------------------------------------------


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown in --help, except where there is none (the help says what happens then)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Multi-zone detector renders of the generalisation benchmark's structures (falloff, Poisson "
        "noise, gaps), corrected with geometry.zones=centre and =all, scored by the CNNs and the least squares "
        "against the clean image (issue 25). Writes WORK/multizone.json, the 'multizone' block of --output and "
        "FIGURES/multizone.png. The group's data are generated first when missing (about 30 s).",
        formatter_class=DefaultsHelp,
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("bench-output/generalisation-data"),
        help="generalisation_data.py's folder (the group is generated there when missing)",
    )
    parser.add_argument("--group", default=DEFAULT_GROUP, help="the benchmark group whose structures are rendered")
    parser.add_argument("--cases", type=int, default=200, help="its first cases (images per set)")
    parser.add_argument("--work", type=Path, default=Path("bench-output/multizone"), help="multizone.json goes here")
    add_output(parser, Path("docs/generalisation.md"), help_text="the document of the 'multizone' block")
    add_figures(parser, Path("docs/generalisation"), help_text="multizone.png goes here")
    parser.add_argument(
        "--model",
        action="append",
        help=f"built-in name or .keras file (repeatable; default {', '.join(DEFAULT_MODELS)})",
    )
    parser.add_argument("--size", type=int, default=384, help="detector pixels per side")
    parser.add_argument("--pixels-per-rlu", type=float, default=64.0, help="the detector's calibration")
    parser.add_argument(
        "--origin",
        type=float,
        nargs=2,
        metavar=("ROW", "COLUMN"),
        help="pixel of h = k = 0 (default the detector's centre, (size - 1) / 2: the cells' pixels lie "
        "symmetrically about their centres)",
    )
    parser.add_argument(
        "--falloff-b",
        type=float,
        nargs=2,
        default=(0.02, 0.1),
        metavar=("LOW", "HIGH"),
        help="B of exp(-B |Q|^2), uniform (r.l.u.^-2)",
    )
    parser.add_argument(
        "--counts",
        type=float,
        nargs=2,
        default=(1.0, 10.0),
        metavar=("LOW", "HIGH"),
        help="counts per pixel at the mean level, log-uniform",
    )
    parser.add_argument(
        "--gaps",
        type=int,
        nargs=3,
        default=(2, 2, 17),
        metavar=("ROWS", "COLUMNS", "WIDTH"),
        help="detector gaps: stripes across rows and columns, width in pixels",
    )
    parser.add_argument("--seed", type=int, help="default: the group file's seed")
    parser.add_argument(
        "--example",
        type=int,
        help="the case shown in the figure (default: the image of the "
        "median gain of the least squares of the last model's CFS)",
    )
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes rendering and correcting"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="CNN prediction batch")
    args = parser.parse_args(argv)
    command = invocation("multizone.py", argv)
    started = time.perf_counter()
    sources = source_hashes()

    path = ensure_group(args.data, args.group, args.workers)
    data = gd.load_group(path)
    attrs = data["attrs"]
    seed = attrs["seed"] if args.seed is None else args.seed
    cases = min(args.cases, len(data["lattices"]))
    lot_size = int(attrs["L"])
    settings = {
        "size": args.size,
        "pixels_per_rlu": args.pixels_per_rlu,
        "origin": [(args.size - 1) / 2] * 2 if args.origin is None else list(args.origin),
        "falloff_b": list(args.falloff_b),
        "counts": list(args.counts),
        "gaps": list(args.gaps),
    }
    drawn = [draw(seed, int(attrs["group_index"]), case, settings) for case in range(cases)]
    jobs = [(case, data["lattices"][case], lot_size, drawn[case], settings) for case in range(cases)]
    pool = spawn_pool(args.workers)  # before TensorFlow: workers need only cfsx.correction
    results = []
    try:
        for result in pool.map(case_job, jobs, chunksize=4) if pool else map(case_job, jobs):
            results.append(result)
            if len(results) % 25 == 0 or len(results) == cases:
                print(
                    f"{len(results)}/{cases} cases rendered and corrected, {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
    finally:
        if pool:
            pool.shutdown()
    seconds_correct = time.perf_counter() - started
    failures = [failure for result in results for failure in result["failures"]]
    sets = {"clean": data["images_all_origins"][:cases]}
    for name in SETS[1:]:
        sets[name] = np.stack([result["images"][name] for result in results])

    models = load_models(args.model or list(DEFAULT_MODELS))
    found = predictions(models, sets, lot_size, args.batch_size)
    methods = []
    for cfs in sorted({model.cfs for model in models}):
        methods += [model.name for model in models if model.cfs == cfs]
        methods += [f"LS-CFS{cfs} no window", f"LS-CFS{cfs} true L"]
    maes = {
        method: {
            name: per_image_mae(data[f"alpha_cfs{method_cfs(method, models)}"][:cases], found[method][name])
            for name in SETS
        }
        for method in methods
    }
    summary = summarise(maes)
    wide = np.abs(data["alpha_wide"][:cases]).copy()
    wide[:, gd.WIDE_RADIUS, gd.WIDE_RADIUS] = 0.0  # alpha(0) = 1
    strongest = wide.reshape(cases, -1).max(axis=1)  # max |alpha(v)| over |v| <= 8: how ordered the lattice is
    folds = [
        {**result["fold"], **drawn[result["case"]], "max_alpha": float(strongest[result["case"]])}
        for result in results
        if "fold" in result
    ]
    fold = fold_summary(folds)
    seconds = time.perf_counter() - started

    cnn = models[-1].name
    fitted = f"LS-CFS{models[-1].cfs} no window"
    if args.example is None:  # the image of the median gain (c) / (b) of the least squares
        gain = maes[fitted]["noisy/all"] / np.maximum(maes[fitted]["noisy/centre"], 1e-12)
        example = int(np.argsort(gain, kind="stable")[len(gain) // 2])
    else:
        example = min(max(args.example, 0), cases - 1)
    _, noisy, _, _ = render(data["lattices"][example], lot_size, drawn[example], settings)
    args.figures.mkdir(parents=True, exist_ok=True)
    figure = "multizone.png"
    clean = sets["clean"][example]
    shown = {
        "noisy": noisy,
        "clean": clean * (0.25 / clean.mean()),  # shown at the corrected images' mean
        "noisy/centre": sets["noisy/centre"][example],
        "noisy/all": sets["noisy/all"][example],
    }
    titles = {
        title: f"MAE {cnn} {maes[cnn][name][example]:.4f}, {fitted} {maes[fitted][name][example]:.4f}"
        for title, name in (
            ("(b) zones=centre", "noisy/centre"),
            ("(c) zones=all", "noisy/all"),
            ("(a) clean", "clean"),
        )
    }
    titles["noisy render"] = "dashed: the window h, k in [-1, 1)"
    case_drawn = drawn[example]
    figure_example(
        {
            **shown,
            "titles": titles,
            "suptitle": f"{attrs['name']} case {example} (the clean image shown at mean 0.25): "
            f"B = {case_drawn['b']:.3f}, {case_drawn['counts']:.1f} counts per pixel at the mean level, "
            f"{settings['gaps'][0]} + {settings['gaps'][1]} gaps of {settings['gaps'][2]} px",
        },
        settings,
        args.figures / figure,
    )
    args.work.mkdir(parents=True, exist_ok=True)
    document = {
        "command": command,
        "seconds": seconds,
        "seconds_render_and_correct": seconds_correct,
        "group": attrs["name"],
        "cases": cases,
        "seed": seed,
        "settings": settings,
        "overrides": {zones: overrides(settings, zones) for zones in ("centre", "all")},
        "models": [model.provenance for model in models],
        "cfsx_sources": sources,
        "cfsx_sources_changed_during_run": source_hashes() != sources,
        "summary": summary,
        "fold": fold,
        "failures": failures,
        "images": [
            {
                "case": result["case"],
                **drawn[result["case"]],
                "masked_fraction": result["masked_fraction"],
                "mae": {method: {name: float(maes[method][name][index]) for name in SETS} for method in methods},
                "fold": result.get("fold"),
            }
            for index, result in enumerate(results)
        ],
    }
    (args.work / "multizone.json").write_text(json.dumps(document, indent=1))
    split = split_table(maes, strongest > ORDERED, methods)
    write_report(args, summary, split, fold, methods, settings, attrs, cases, seconds, command, figure)
    print(results_table(summary, methods))
    print(fold_text(fold, cases))
    if source_hashes() != sources:
        print("WARNING: cfsx's correction sources changed during the run; run it again", file=sys.stderr)
    if failures:
        print(f"{len(failures)} corrections refused: {failures[:5]}")
    print(f"wrote {args.output}, {args.work / 'multizone.json'} in {seconds / 60:.1f} minutes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
