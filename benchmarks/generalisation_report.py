"""The generalisation benchmark's report: its tables, figures and the marked block of docs/generalisation.md
(benchmarks/generalisation.py writes it from the scores of every group)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import generalisation_data as gd
import numpy as np
from generalisation_methods import Model
from harness import fmt, markdown_table, pyplot, replace_block, timed_line

from cfsx.interpretation.estimates import FINAL_RULE
from cfsx.physics.inversion import NO_WINDOW  # the lot size of "no lot window"


def mean_over_groups(rows: list[dict], **match) -> float:
    values = [row["mae"] for row in rows if all(row[key] == value for key, value in match.items())]
    return float(np.mean(values)) if values else float("nan")


def mark_best(values: list[float], digits: int = 4) -> list[str]:
    """Format, with the smallest finite value in bold."""
    finite = [v for v in values if np.isfinite(v)]
    best = min(finite) if finite else None
    return [f"**{fmt(v, digits)}**" if best is not None and v == best else fmt(v, digits) for v in values]


def methods_in_order(rows: list[dict], models: list[Model]) -> list[str]:
    order = []
    for cfs in sorted({model.cfs for model in models}):
        order += [model.name for model in models if model.cfs == cfs]
        order += [f"LS-CFS{cfs} no window", f"LS-CFS{cfs} true L", f"final-CFS{cfs}"]
    return order


def summary_table(rows: list[dict], methods: list[str], groups: list[str]) -> str:
    header = ("group", "images", *methods)
    table = []
    for group in groups:
        for image in ("clean", "all-origins"):
            values = [mean_over_groups(rows, group=group, image=image, method=m, treatment="raw") for m in methods]
            table.append((group, image, *mark_cfs(values, methods)))
    for image in ("clean", "all-origins"):
        values = [mean_over_groups(rows, image=image, method=m, treatment="raw") for m in methods]
        table.append(("**mean of groups**", image, *mark_cfs(values, methods)))
    return markdown_table(header, table)


def mark_cfs(values: list[float], methods: list[str]) -> list[str]:
    """Bold the best value among the estimators of the same CFS (the final answer is one of them: not marked)."""
    out = [fmt(value) for value in values]
    for cfs in sorted({m.split("CFS")[1][0] for m in methods}):
        index = [i for i, m in enumerate(methods) if m.split("CFS")[1][0] == cfs and not m.startswith("final")]
        for i, text in zip(index, mark_best([values[i] for i in index]), strict=True):
            out[i] = text
    return out


def r2_table(rows: list[dict], methods: list[str]) -> str:
    table = []
    for image in ("clean", "all-origins"):
        cells = []
        for m in methods:
            values = [row["r2"] for row in rows if row["image"] == image and row["method"] == m]
            cells.append(fmt(float(np.mean(values)) if values else float("nan"), 3))
        table.append((image, *cells))
    return markdown_table(("images (mean R2 over groups)", *methods), table)


def corruption_table(rows: list[dict], methods: list[str], image: str, treatments: tuple[str, ...]) -> str:
    kinds = [("-", 0)] + [(kind, level) for kind in gd.KINDS for level in gd.LEVELS]
    table = []
    for kind, level in kinds:
        for treatment in treatments:
            selected = [
                row
                for row in rows
                if row["image"] == image
                and row["kind"] == kind
                and row["level"] == level
                and row["treatment"] == treatment
            ]
            if kind == "-" and image == "corrupted":
                selected = [row for row in rows if row["image"] == "clean" and row["treatment"] == treatment]
            if not selected:
                continue
            values = [mean_over_groups(selected, method=m) for m in methods]
            nonfinite = sum(row["nonfinite"] for row in selected if row["method"].startswith("CNN"))
            failures = sum(row["correction_failures"] for row in selected) // max(len(methods), 1)
            masked = sum(row.get("bragg_masked", 0) for row in selected) // max(len(methods), 1)
            notes = []
            if treatment == "corrected" and kind not in ("bragg", "combined"):
                notes.append(
                    f"Bragg step masked pixels in {masked} of {sum(row['n'] for row in selected) // len(methods)}"
                )
            if nonfinite:
                notes.append(f"CNN non-finite: {nonfinite}")
            if failures:
                notes.append(f"refused by correct: {failures}")
            name = "none (clean)" if kind == "-" else kind
            table.append(
                (name, "-" if level == 0 else str(level), treatment, *mark_cfs(values, methods), "; ".join(notes))
            )
    return markdown_table(("corruption", "level", "fed", *methods, "notes"), table)


def goals_table(rows: list[dict], models: list[Model]) -> str:
    """The issue's goals per CFS: final <= min(CNN, least squares no window) + 0.001 on every image set, and
    after correct every kind at level 2 within 1.5x the final clean MAE (corrected, and raw clean for reference)."""
    table = []
    for cfs in sorted({model.cfs for model in models}):
        cnn = next(model.name for model in models if model.cfs == cfs)
        names = (cnn, f"LS-CFS{cfs} no window", f"final-CFS{cfs}")
        sets = sorted({(row["image"], row["kind"], row["level"], row["treatment"]) for row in rows})
        met = {"raw": [0, 0], "corrected": [0, 0], "calibrated": [0, 0]}
        misses = []
        for image, kind, level, treatment in sets:
            if image == "all-origins":
                continue
            match = {"image": image, "kind": kind, "level": level, "treatment": treatment}
            mae_cnn, mae_ls, mae_final = (mean_over_groups(rows, method=name, **match) for name in names)
            ok = mae_final <= min(mae_cnn, mae_ls) + 0.001
            group = "raw" if treatment == "raw" else treatment
            met[group][0] += ok
            met[group][1] += 1
            if not ok:
                misses.append(f"{image} {kind} {level} {treatment} ({fmt(mae_final)} vs {fmt(min(mae_cnn, mae_ls))})")
        clean = {t: mean_over_groups(rows, method=names[2], image="clean", treatment=t) for t in ("raw", "corrected")}
        ratios = []
        for kind in gd.KINDS:
            value = mean_over_groups(
                rows, method=names[2], image="corrupted", kind=kind, level=2, treatment="corrected"
            )
            ratios.append(f"{kind} {value / clean['corrected']:.2f} ({value / clean['raw']:.2f})")
        table.append((
            f"CFS{cfs}",
            " / ".join(f"{met[k][0]} of {met[k][1]}" for k in ("corrected", "calibrated", "raw")),
            "; ".join(misses) or "none",
            ", ".join(ratios),
        ))  # fmt: skip
    header = ("CFS", "final <= min + 0.001: corrected / detector / raw sets",
              "misses (final vs min)", "level 2 after correct / clean after correct (/ clean raw)")  # fmt: skip
    return markdown_table(header, table)


def compact_group_table(rows: list[dict], methods: list[str], groups: list[str]) -> str:
    """Per group: MAE of each method on the combined corruption at each level, raw and corrected."""
    table = []
    for level in gd.LEVELS:
        for treatment in ("raw", "corrected"):
            for group in groups:
                values = [
                    mean_over_groups(
                        rows,
                        group=group,
                        image="corrupted",
                        kind="combined",
                        level=level,
                        treatment=treatment,
                        method=m,
                    )
                    for m in methods
                ]
                table.append((str(level), treatment, group, *mark_cfs(values, methods)))
    return markdown_table(("combined level", "fed", "group", *methods), table)


def figure_levels(rows: list[dict], models: list[Model], folder: Path) -> list[str]:
    plt = pyplot()
    written = []
    for cfs in sorted({model.cfs for model in models}):
        methods = [m for m in methods_in_order(rows, models) if f"CFS{cfs}" in m]
        figure, axes = plt.subplots(2, 3, figsize=(13, 7), sharey=True)
        for axis, kind in zip(axes.ravel(), gd.KINDS, strict=True):
            for index, method in enumerate(methods):
                colour = f"C{index}"
                for treatment, style in (("raw", "-"), ("corrected", "--")):
                    clean = mean_over_groups(rows, image="clean", method=method, treatment=treatment)
                    values = [clean] + [
                        mean_over_groups(
                            rows, image="corrupted", kind=kind, level=level, treatment=treatment, method=method
                        )
                        for level in gd.LEVELS
                    ]
                    axis.plot(range(4), values, style, marker="o", color=colour, label=f"{method}, {treatment}")
            axis.set_title(kind)
            axis.set_xticks(range(4), ["clean", "1", "2", "3"])
            axis.set_yscale("log")
            axis.grid(alpha=0.3)
        for axis in axes[:, 0]:
            axis.set_ylabel("alpha MAE (mean of groups)")
        axes[0, 0].legend(fontsize=7)
        figure.suptitle(f"CFS{cfs}: MAE against corruption level (solid raw, dashed after cfsx correct defaults)")
        figure.tight_layout()
        name = f"mae-vs-level-cfs{cfs}.png"
        figure.savefig(folder / name, dpi=90)
        plt.close(figure)
        written.append(name)
    return written


def figure_parity(parity: dict, models: list[Model], folder: Path) -> str:
    plt = pyplot()
    columns = ["CNN", "no window", "true L"]
    figure, axes = plt.subplots(len(models), 3, figsize=(11, 3.6 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        truth = parity[f"truth-CFS{model.cfs}"]
        for column, method in enumerate([model.name, f"LS-CFS{model.cfs} no window", f"LS-CFS{model.cfs} true L"]):
            axis = axes[row, column]
            estimate = np.nan_to_num(parity[method])
            axis.scatter(truth.ravel(), estimate.ravel(), s=3, alpha=0.4)
            axis.plot([-1, 1], [-1, 1], "k-", lw=0.6)
            mae = np.abs(estimate - truth).mean()
            axis.set_title(f"{method if column else model.name}: MAE {mae:.4f}", fontsize=9)
            axis.set_xlabel("true alpha")
            axis.set_ylabel(f"estimated alpha ({columns[column]})")
            axis.set_xlim(-1, 1)
            axis.set_ylim(-1, 1)
            axis.grid(alpha=0.3)
    figure.suptitle(f"Clean lot-averaged images of {parity['group']}: every component of every case")
    figure.tight_layout()
    name = "parity-clean.png"
    figure.savefig(folder / name, dpi=90)
    plt.close(figure)
    return name


def describe_benchmark(attrs: dict) -> str:
    reduced = json.loads(attrs["corruption_reduced"])
    groups = ", ".join(
        f"`{spec.name}` (N = {spec.size}, L = {spec.lot_size}, K = {spec.lots_label})" for spec in gd.GROUPS
    )
    return f"""\
The data: `benchmarks/generalisation_data.py` (generator version {attrs["generator_version"]}, seed {attrs["seed"]},
{attrs["cases"]} cases per group), written from DESIGN.md section 1 alone, without cfsx's engine. Lattices come from
exchange (Kawasaki) Monte Carlo at FIXED random pair couplings (range 1-3, mixed signs, anisotropic; strength
kappa log-uniform in {attrs["strength_range"]}, where kappa = 1 is the mean-field ordering point), concentration
uniform in {attrs["concentration_range"]}, {attrs["sweeps"]} sweeps ({attrs["ordered_sweeps"]} for kappa >
{attrs["ordered_above"]}). Labels: alpha measured on the final periodic lattice (CFS2/3/4). Cfsx's models were
trained at c = 0.5 with feedback-reached targets on 50 x 50 lattices and 8 lots of 25 x 25, so every group is
outside their training distribution in concentration and in N, L, K.

Groups (N x N lattice, K lots of L x L; "all" = the exact average over all N^2 lot origins): {groups}.
Per case: the lot-averaged 64 x 64 image over h, k in [-1, 1) ("clean"), the exact all-origins image of the same
lattice and L ("all-origins": the lot-noise-free expectation), corrupted copies and (first
{attrs["detector_cases"]} cases) 512 x 512 detector renders with h = k = 0 at pixel {attrs["detector_origin"]} and
{attrs["detector_pixels_per_rlu_range"]} pixels per r.l.u.

Corruptions (levels 1, 2, 3; 1 = mildest): poisson ({reduced["counts"]} counts per pixel at the mean level),
falloff exp(-B q^2) with B = {reduced["falloff_b"]} r.l.u.^-2, bragg (peaks at integer h, k of height
{reduced["bragg_heights"]} x the mean level; a third single pixels on the 64 grid), gaps (zeros; rows, columns,
width in px: {reduced["gaps"]}), beamstop (-1 flags: disk of radius {reduced["beamstop_radius"]} r.l.u. and an arm
{reduced["beamstop_arm"]} wide), combined (level i of each: ((clean + bragg) * falloff) -> poisson -> gaps ->
beamstop)."""


def methods_text(args, corrupted_cases: int) -> str:
    return f"""\
Methods. **CNN-CFSn**: the model's encoding averaged with the transposed image's (`predict_encodings`, as
`cfsx interpret` runs it), compared with the CFSn labels. **LS-CFSn no window**: `WarrenCowleyInversion(vectors, 64,
1.0, lot_size={NO_WINDOW:.0e})`, i.e. the Fejer window of an infinite lot (the class needs an integer lot size; this is
"no lot window", what a user without knowledge of the domain size can do), fit range R = 15. **LS-CFSn true L**: the
same told the group's lot size L. **final-CFSn**: the final answer of `cfsx interpret` for a measured image
(cfsx/estimates.py: {FINAL_RULE}). Scores: alpha MAE over all components and cases (and mean R2 over components),
averaged over the six groups where a table says so; the best of CNN and least squares per CFS is in bold.

Images fed: clean and all-origins on all cases; corrupted ones on the first {corrupted_cases} cases of each group,
(i) raw, zeros and -1 flags and all, and (ii) "corrected": `correct_image(raw, CorrectionConfig defaults)` (the
built-in `correct` config, uncalibrated, so the whole 64 x 64 image is the window), as a new user gets them without
and with `cfsx correct`. Detector renders (first 16 cases per group): `correct_image` with their known calibration
(origin, pixels per r.l.u., `bragg.method=lattice`, `mask.zeros=values`: cfsx.simulation.detector's recipe) and the
gap and
beamstop masks as the mask file. Non-finite predictions (a CNN fed zeros and -1 flags takes log of them) count as
alpha = 0 and are counted in the notes."""


def write_report(args, rows, parity_rows, refine_rows, rule_rows, models, attrs, seconds, command) -> None:
    folder = args.figures
    folder.mkdir(parents=True, exist_ok=True)
    groups = [spec.name for spec in gd.GROUPS if any(row["group"] == spec.name for row in rows)]
    methods = methods_in_order(rows, models)
    level_figures = figure_levels(rows, models, folder)
    parity_figure = figure_parity(parity_rows, models, folder) if parity_rows else None
    relative = os.path.relpath(folder, args.output.parent)
    corrupted_cases = max((row["n"] for row in rows if row["image"] == "corrupted"), default=0)

    provenance = markdown_table(
        ("model", "file", "sha256", "hold-out R2", "hold-out MAE", "epochs (best)", "training data", "lot size"),
        [
            (
                m.name,
                f"`{m.path}`",
                f"`{m.provenance['sha256'][:16]}...`",
                fmt(m.provenance["holdout_r2"]),
                fmt(m.provenance["holdout_mae"]),
                f"{m.provenance['epochs_run']} ({m.provenance['best_epoch']})",
                f"`{m.provenance['data']}`",
                str(m.provenance["lot_size"]),
            )
            for m in models
        ],
    )
    parts = [
        timed_line(command, seconds) + " with the data and models present.",
        describe_benchmark(attrs),
        methods_text(args, corrupted_cases),
        "### Models\n\n" + provenance + "\n\nFull sha256 and every score: `results.json` in the work directory ("
        f"`{args.work}`).",
        "### Summary: alpha MAE on clean and all-origins images\n\n"
        + summary_table(rows, methods, groups)
        + "\n\nMean R2 over components (averaged over groups):\n\n"
        + r2_table(rows, methods),
    ]
    if parity_figure:
        parts.append(f"![parity]({relative}/{parity_figure})")
    parts.append(
        "### Corrupted images: alpha MAE, mean of the six groups\n\nLevel '-' is the clean lot-averaged image "
        "(raw: the summary's numbers on all cases; corrected: the first cases through `cfsx correct`).\n\n"
        + corruption_table(rows, methods, "corrupted", ("raw", "corrected"))
    )
    parts += [f"![MAE against level]({relative}/{name})" for name in level_figures]
    parts.append(
        "### The goals of issue 12\n\nThe final answer against the better of CNN and least squares (no window) per "
        "image set (mean of groups; the clean set counts as corrected and as raw), and each corruption kind at its "
        "middle level after `cfsx correct` against the clean images after `cfsx correct` (goal <= 1.5; in brackets "
        "against the clean images as they are).\n\n" + goals_table(rows, models)
    )
    if rule_rows:
        parts.append(
            "### Why not the lowest decoded misfit\n\nThe alternative rule: per image the estimate whose decoded "
            "images (interpret's decode settings, `DecodeConfig` defaults) explain the observation best. Alpha MAE "
            f"on the first {rule_rows[0]['n']} images of sets of {parity_rows['group']}; 'oracle' takes the better "
            "of the two for every image.\n\n"
            + markdown_table(
                (
                    "set",
                    "model",
                    "CNN",
                    "least squares (the stated rule)",
                    "lowest decoded misfit",
                    "oracle",
                    "least squares chosen",
                    "better one chosen",
                ),
                [
                    (
                        r["set"],
                        r["method"],
                        fmt(r["cnn"]),
                        fmt(r["least_squares"]),
                        fmt(r["lowest_decoded_misfit"]),
                        fmt(r["oracle"]),
                        f"{100 * r['least_squares_chosen']:.0f} %",
                        f"{100 * r['better_chosen']:.0f} %",
                    )
                    for r in rule_rows
                ],
            )  # fmt: skip
        )
    parts.append("### Combined corruption per group: alpha MAE\n\n" + compact_group_table(rows, methods, groups))
    if any(row["image"] == "detector" for row in rows):
        parts.append(
            "### Detector renders (512 x 512) corrected with their calibration: alpha MAE, mean of the six groups"
            "\n\n" + corruption_table(rows, methods, "detector", ("calibrated",))
        )
    if refine_rows:
        seconds_per = ", ".join(
            f"{row['method']} {row['seconds_per_image']:.1f}" for row in refine_rows if row["seconds_per_image"]
        )
        parts.append(
            f"### Refinement (subsample)\n\n`interpret --refine` from the CNN (refine config defaults, no start "
            f"from zero) on the first {refine_rows[0]['n']} clean images of {parity_rows['group']}, "
            f"seconds per image: {seconds_per}.\n\n"
            + markdown_table(
                ("method", "MAE", "R2"), [(r["method"], fmt(r["mae"]), fmt(r["r2"], 3)) for r in refine_rows]
            )
        )
    else:
        parts.append(
            "Refinement (cfsx.interpretation.refinement, seconds per image) is left out of this run "
            "(`--refine-cases 0`)."
        )
    title = "# Generalisation benchmark\n\n"
    intro = (
        "How cfsx's CNNs and the classical least squares read alpha off images they were not trained on: the "
        "yardstick later work is judged on. Made by `make generalisation` (benchmarks/generalisation.py).\n"
    )
    replace_block(args.output, "generalisation", "\n\n".join(parts), title=title + intro)
