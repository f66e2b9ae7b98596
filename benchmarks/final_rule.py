"""Issue 27: does a final-answer rule that looks at the image choose better than FINAL_RULE (cfsx/estimates.py)?

Per image of the generalisation benchmark (benchmarks/generalisation_data.py, groups n64-l32-k8 and n64-l32-kall,
the first ``--cases`` cases of each) and per built-in general model (general-cfs4, general-cfs2):

- image sets: the clean images raw (not corrected: FINAL_RULE takes the least squares there), the clean images
  through ``cfsx correct`` and every corrupted kind at each ``--levels`` through ``cfsx correct`` (default config,
  uncalibrated: the whole image is the window; the stored gap/beamstop masks passed as ``extra_mask``);
- the two estimates as ``cfsx interpret`` makes them: the CNN (``predict_encodings`` with the transposed-image
  average) and the least squares (``cfsx.estimates.least_squares``, no lot window), on the NaN-zeroed image;
- each estimate's analytic-image fit (``fit_quality(image, analytic_image(estimate), measured=mask == 0,
  variance)``: R1, R2, chi2 after a fitted scale and background, on the correction's measured cells; every cell
  and no variance for the raw set).

Rules scored (alpha MAE against the truth, mean over images): CNN, LS, today's rule (``choose_final``: the CNN
for corrected images with a hybrid model, else the LS where defined), "R2" (the estimate whose analytic image has
the higher R2), "R1" (lower R1), "blend" (w CNN + (1 - w) LS with w = softmax of the two R2 / tau), the oracle
(per image the better of the two; not a bound for blends, which can beat both). Extra rules, labelled as such:
"chi2" (lower chi2 where the correction gave the cells' variance, else R2), "R2+m" (the CNN unless the LS's R2
exceeds the CNN's by more than m), "blend+b" (w = sigmoid((R2_cnn - R2_ls + b) / tau)), "avg" (w = 1/2, no image
evidence), "fixed w" (a constant w, no image evidence) and "mask" (the CNN where more than a share s of the cells
were not measured, else the LS). Where the LS is undefined every rule takes the CNN; where a fit is undefined (an
image the correction refused) the rule falls back to today's.

Every parameter (tau; tau and b; m; w; s) is chosen on the even cases only, separately for raw and for corrected
images (what FINAL_RULE knows of an image too), minimising the mean over that class's image sets of the set's
mean MAE (both groups pooled; one value per model and class); the tables report the held-out odd cases
(``--half odd``, the default).

    PYTHONPATH=. .venv/bin/python benchmarks/final_rule.py [--cases 100] [--levels 1 2 3] [--work /tmp/rule]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generalisation_data as gd  # noqa: E402

GROUPS = ("n64-l32-k8", "n64-l32-kall")
MODELS = ("general-cfs4", "general-cfs2")
COLUMNS = ("CNN", "LS", "today", "R2", "R1", "blend", "oracle")
EXTRA = ("chi2", "R2+m", "blend+b", "avg", "fixed w", "mask")
SHARES = np.concatenate([[-1.0], np.linspace(0, 0.7, 71), [np.inf]])  # mask rule: -1 always CNN, inf never
MARGINS = np.concatenate([np.linspace(-0.05, 0.2, 101), [np.inf]])
WEIGHTS = np.linspace(0, 1, 21)
TAUS = np.concatenate([np.logspace(-5, 0, 41), [np.inf]])  # tau = inf: w = 1/2
OFFSETS = np.linspace(-0.05, 0.1, 61)


# --- corrections (worker processes) -----------------------------------------------------------------------------


def correct_chunk(job: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(images, masks or None) -> corrected images (NaN where refused), correction masks (255 where refused),
    variances (NaN where unknown), refusals."""
    from cfsx.config import CorrectionConfig, load_config
    from cfsx.correction import correct_image
    from cfsx.errors import CfsxError

    images, masks = job
    config = load_config("correct", [], root=CorrectionConfig)
    out = np.full((len(images), 64, 64), np.nan)
    mask = np.full((len(images), 64, 64), 255, dtype=np.uint8)
    variance = np.full((len(images), 64, 64), np.nan)
    refused = 0
    for index, image in enumerate(images):
        try:
            corrected = correct_image(image, config, extra_mask=None if masks is None else masks[index] > 0)
        except CfsxError:
            refused += 1
            continue
        out[index], mask[index] = corrected.image, corrected.mask
        if corrected.variance is not None:
            variance[index] = corrected.variance
    return out, mask, variance, refused


def image_sets(data: dict, cases: int, levels: list[int], pool) -> tuple[dict, dict]:
    """name -> (images, measured cells or None, variances or None) and name -> refusals."""
    jobs = {"clean corrected": (data["images_clean"][:cases], None)}
    for level in levels:
        for kind in gd.KINDS:
            masks = data.get(f"masks/{kind}/{level}")
            jobs[f"{kind} {level}"] = (data[f"images_corrupted/{kind}/{level}"][:cases],
                                       None if masks is None else masks[:cases])  # fmt: skip
    futures = {}
    for name, (images, masks) in jobs.items():
        for start in range(0, cases, 25):
            part = slice(start, start + 25)
            futures[(name, start)] = pool.submit(correct_chunk, (images[part], None if masks is None else masks[part]))
    sets = {"clean raw": (data["images_clean"][:cases].astype(np.float64), None, None)}
    refused = {"clean raw": 0}
    for name in jobs:
        parts = [futures[(name, start)].result() for start in range(0, cases, 25)]
        images, masks, variances = (np.concatenate([part[i] for part in parts]) for i in range(3))
        sets[name] = (images, masks == 0, variances)
        refused[name] = sum(part[3] for part in parts)
    return sets, refused


# --- estimates and fits -----------------------------------------------------------------------------------------


def fits(images, measured, variances, estimates: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(S, 3): R1, R2, chi2 (NaN: undefined or unknown) of each image's estimate's analytic image."""
    from cfsx.fit_quality import fit_quality
    from cfsx.model_images import analytic_image

    out = np.full((len(images), 3), np.nan)
    for index, (image, estimate) in enumerate(zip(images, estimates, strict=True)):
        if not np.isfinite(estimate).all() or not np.isfinite(image).any():
            continue
        quality = fit_quality(image, analytic_image(estimate, vectors, 64, 1.0),
                              None if measured is None else measured[index],
                              None if variances is None else variances[index])  # fmt: skip
        out[index] = quality.r1, quality.r2, np.nan if quality.chi2 is None else quality.chi2
    return out


def compute(args) -> dict:
    """Every per-image quantity, as flat arrays over (model, group, set, case)."""
    from cfsx.builtin import resolve_model
    from cfsx.encoding import transpose_permutation
    from cfsx.estimates import CNN, CORRECTION_TRAINED, LEAST_SQUARES, choose_final, least_squares
    from cfsx.models import load_model, predict_encodings

    keys = ("group", "set", "case", "truth", "cnn", "ls", "today", "fit_cnn", "fit_ls", "ls_true_l", "unmeasured")
    rows: dict[str, dict[str, list]] = {model: {key: [] for key in keys} for model in MODELS}
    networks = {name: load_model(resolve_model(name)) for name in MODELS}
    refusals = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for group in GROUPS:
            started = time.perf_counter()
            data = gd.load_group(Path(args.data) / f"{group}.h5")
            sets, refusals[group] = image_sets(data, args.cases, args.levels, pool)
            print(f"{group}: corrected {len(sets) - 1} sets in {time.perf_counter() - started:.0f} s", flush=True)
            for model_name, (network, card) in networks.items():
                vectors = np.asarray(card.vectors)
                permutation = transpose_permutation(vectors)
                hybrid = card.architecture in CORRECTION_TRAINED
                truth = data[f"alpha_cfs{card.cfs}"][: args.cases]
                into = rows[model_name]
                for set_name, (images, measured, variances) in sets.items():
                    clean = np.nan_to_num(images).astype(np.float32)
                    cnn = predict_encodings(network, clean, permutation, 256)[0].astype(np.float64)
                    with np.errstate(all="ignore"):
                        fitted = least_squares(clean.astype(np.float64), vectors, 1.0)
                        true_l = least_squares(clean.astype(np.float64), vectors, 1.0,
                                               np.full(len(clean), int(data["attrs"]["L"])))  # fmt: skip
                    corrected = set_name != "clean raw"
                    today = choose_final({CNN: cnn, LEAST_SQUARES: fitted},
                                         np.full(len(cnn), hybrid and corrected)).final  # fmt: skip
                    count = len(cnn)
                    for key, value in (("cnn", cnn), ("ls", fitted), ("today", today), ("truth", truth),
                                       ("ls_true_l", true_l), ("group", [group] * count),
                                       ("set", [set_name] * count), ("case", np.arange(count)),
                                       ("unmeasured", np.zeros(count) if measured is None else
                                        1.0 - measured.reshape(count, -1).mean(axis=1)),
                                       ("fit_cnn", fits(images, measured, variances, cnn, vectors)),
                                       ("fit_ls", fits(images, measured, variances, fitted, vectors))):  # fmt: skip
                        into[key].append(np.asarray(value))
                print(f"{group} {model_name}: estimates and fits done at {time.perf_counter() - started:.0f} s",
                      flush=True)  # fmt: skip
    print("corrections refused:", refusals)
    return {f"{model}/{key}": np.concatenate(value) for model, part in rows.items() for key, value in part.items()}


# --- rules ------------------------------------------------------------------------------------------------------


def mae(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image alpha MAE; a non-finite estimate counts as 0 (no correlation), as the benchmark scores it."""
    return np.abs(np.where(np.isfinite(estimate), estimate, 0.0) - truth).mean(axis=1)


def pick(condition: np.ndarray, cnn: np.ndarray, ls: np.ndarray, today: np.ndarray, defined: np.ndarray):
    """The CNN where ``condition``, else the LS; the CNN where the LS is undefined; today's where not ``defined``."""
    usable = np.isfinite(ls).all(axis=1)
    chosen = np.where((condition | ~usable)[:, None], cnn, ls)
    return np.where(defined[:, None], chosen, today)


def blend(r2_cnn, r2_ls, tau: float, offset: float = 0.0) -> np.ndarray:
    """w of the CNN: softmax of (R2_cnn + offset, R2_ls) / tau (tau = inf: 1/2)."""
    if not np.isfinite(tau):
        return np.full(len(r2_cnn), 0.5)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(np.clip((r2_ls - r2_cnn - offset) / tau, -700, 700)))


def errors(rows: dict, parameters: dict | None = None) -> dict[str, np.ndarray]:
    """Per-image MAE of every rule on ``rows`` with the tuned rules' ``parameters`` (PARAMETERS' keys)."""
    p = {**DEFAULTS, **(parameters or {})}
    cnn, ls, today, truth = rows["cnn"], rows["ls"], rows["today"], rows["truth"]
    fit_cnn, fit_ls = rows["fit_cnn"], rows["fit_ls"]
    usable = np.isfinite(ls).all(axis=1)
    ls_or_cnn = np.where(usable[:, None], ls, cnn)
    r1_defined = np.isfinite(fit_cnn[:, 0]) & (np.isfinite(fit_ls[:, 0]) | ~usable)
    r2_defined = np.isfinite(fit_cnn[:, 1]) & (np.isfinite(fit_ls[:, 1]) | ~usable)
    chi2_known = np.isfinite(fit_cnn[:, 2]) & np.isfinite(fit_ls[:, 2])
    out = {
        "CNN": mae(cnn, truth),
        "LS": mae(ls, truth),
        "today": mae(today, truth),
        "R2": mae(pick(fit_cnn[:, 1] > fit_ls[:, 1], cnn, ls, today, r2_defined), truth),
        "R1": mae(pick(fit_cnn[:, 0] < fit_ls[:, 0], cnn, ls, today, r1_defined), truth),
        "R2+m": mae(pick(fit_cnn[:, 1] > fit_ls[:, 1] - p["m"], cnn, ls, today, r2_defined), truth),
        "chi2": mae(
            pick(
                np.where(chi2_known, fit_cnn[:, 2] < fit_ls[:, 2], fit_cnn[:, 1] > fit_ls[:, 1]),
                cnn,
                ls,
                today,
                r2_defined,
            ),
            truth,
        ),  # fmt: skip
    }
    for name, tau, offset in (("blend", p["tau"], 0.0), ("blend+b", p["tau_b"], p["b"])):
        w = blend(fit_cnn[:, 1], np.where(usable, fit_ls[:, 1], -np.inf), tau, offset)[:, None]
        mixed = np.where(r2_defined[:, None], w * cnn + (1 - w) * ls_or_cnn, today)
        out[name] = mae(mixed, truth)
    out["avg"] = mae(0.5 * cnn + 0.5 * ls_or_cnn, truth)
    out["fixed w"] = mae(p["w"] * cnn + (1 - p["w"]) * ls_or_cnn, truth)
    out["mask"] = mae(pick(rows["unmeasured"] > p["s"], cnn, ls, today, np.ones(len(cnn), bool)), truth)
    out["oracle"] = np.minimum(out["CNN"], mae(ls_or_cnn, truth))
    return out


DEFAULTS = {"tau": np.inf, "tau_b": np.inf, "b": 0.0, "m": 0.0, "w": 0.5, "s": np.inf}
# The tuned rules: their parameter grids (each chosen on the training cases alone).
PARAMETERS = {
    "blend": [{"tau": tau} for tau in TAUS],
    "blend+b": [{"tau_b": tau, "b": offset} for tau in TAUS for offset in OFFSETS],
    "R2+m": [{"m": margin} for margin in MARGINS],
    "fixed w": [{"w": weight} for weight in WEIGHTS],
    "mask": [{"s": share} for share in SHARES],
}
CLASSES = ("raw", "corrected")  # what the rules may know of an image, as FINAL_RULE does: whether it was corrected


def subset(rows: dict, chosen: np.ndarray) -> dict:
    return {key: rows[key][chosen] for key in ("cnn", "ls", "today", "truth", "fit_cnn", "fit_ls", "set", "unmeasured")}


def objective(rows: dict, per_image: np.ndarray) -> float:
    """The mean over the image sets in ``rows`` of each set's mean MAE."""
    return float(np.mean([per_image[rows["set"] == name].mean() for name in dict.fromkeys(rows["set"].tolist())]))


def choose_parameters(train: dict) -> tuple[dict, dict]:
    """Per tuned rule, the grid point minimising ``objective`` on ``train``; and the objective values."""
    chosen, values = {}, {}
    for rule, grid in PARAMETERS.items():
        scores = [objective(train, errors(train, point)[rule]) for point in grid]
        best = int(np.argmin(scores))
        chosen.update(grid[best])
        values[rule] = scores[best]
    return chosen, values


def image_class(rows: dict) -> np.ndarray:
    return np.where(rows["set"] == "clean raw", "raw", "corrected")


def report(result: dict, half: str) -> dict:
    """Per model and class of image (raw, corrected): parameters chosen on the even cases; every rule's mean MAE per
    set on ``half``'s cases, and the paired differences to today's rule."""
    out = {}
    for model in MODELS:
        flat = {key.split("/", 1)[1]: value for key, value in result.items() if key.startswith(model + "/")}
        sets = list(dict.fromkeys(flat["set"].tolist()))
        classes = image_class(flat)
        parameters, train_objective, per_set = {}, {}, {}
        for kind in CLASSES:
            train = subset(flat, (flat["case"] % 2 == 0) & (classes == kind))
            parameters[kind], train_objective[kind] = choose_parameters(train)
            held = subset(flat, (flat["case"] % 2 == (0 if half == "even" else 1)) & (classes == kind))
            per_image = errors(held, parameters[kind])
            for name in dict.fromkeys(held["set"].tolist()):
                inside = held["set"] == name
                fit_cnn, fit_ls = held["fit_cnn"][inside], held["fit_ls"][inside]
                ls_error = mae(held["ls"][inside], held["truth"][inside])
                per_set[name] = {
                    "mae": {rule: float(values[inside].mean()) for rule, values in per_image.items()},
                    "paired": {
                        rule: (
                            float((values[inside] - per_image["today"][inside]).mean()),
                            float((values[inside] - per_image["today"][inside]).std(ddof=1) / np.sqrt(inside.sum())),
                        )
                        for rule, values in per_image.items()
                    },  # fmt: skip
                    "n": int(inside.sum()),
                    "share_cnn_R2": float(np.mean(fit_cnn[:, 1] > fit_ls[:, 1])),
                    "share_cnn_R1": float(np.mean(fit_cnn[:, 0] < fit_ls[:, 0])),
                    "share_cnn_R2m": float(np.mean(fit_cnn[:, 1] > fit_ls[:, 1] - parameters[kind]["m"])),
                    "share_cnn_better": float(np.mean(per_image["CNN"][inside] < ls_error)),
                    "ls_undefined": int((~np.isfinite(held["ls"][inside]).all(axis=1)).sum()),
                    "fit_undefined": int((~np.isfinite(fit_cnn[:, 1])).sum()),
                    "mean_r2_cnn": float(np.nanmean(fit_cnn[:, 1])),
                    "mean_r2_ls": float(np.nanmean(fit_ls[:, 1])),
                }
        shown = (flat["case"] % 2 == (0 if half == "even" else 1)) & (flat["set"] == "clean raw")
        out[model] = {
            "parameters": {
                kind: {key: float(value) for key, value in values.items()} for kind, values in parameters.items()
            },  # fmt: skip
            "train_objective": train_objective,
            "sets": {name: per_set[name] for name in sets},
            "ls_true_l_clean_raw": float(mae(flat["ls_true_l"][shown], flat["truth"][shown]).mean()),
        }
    return out


def print_report(summary: dict, half: str) -> None:
    columns = (*COLUMNS, *EXTRA)
    for model, part in summary.items():
        print(f"\n## {model}: mean alpha MAE on the {half} cases")
        for kind, values in part["parameters"].items():
            print(f"parameters for {kind} images (chosen on the even cases): "
                  + ", ".join(f"{key} = {value:.4g}" for key, value in values.items()))  # fmt: skip
        print("| set (n) | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for name, row in part["sets"].items():
            print(f"| {name} ({row['n']}) | " + " | ".join(f"{row['mae'][c]:.4f}" for c in columns) + " |")
        corrected = [row for name, row in part["sets"].items() if name != "clean raw"]
        everything = list(part["sets"].values())
        for label, rows in (("mean over corrected sets", corrected), ("mean over all sets", everything)):
            print(f"| {label} | " + " | ".join(f"{np.mean([row['mae'][c] for row in rows]):.4f}" for c in columns)
                  + " |")  # fmt: skip
        print("\nrule - today (paired over images): sets better / worse; beyond 2 s.e.; mean difference over sets")
        for rule in columns:
            if rule == "today":
                continue
            pairs = np.array([row["paired"][rule] for row in part["sets"].values()])
            values, errors = pairs[:, 0], pairs[:, 1]
            print(
                f"  {rule:8s} better {int((values < 0).sum()):2d}, worse {int((values > 0).sum()):2d} of "
                f"{len(values)}; beyond 2 s.e. better {int((values < -2 * errors).sum()):2d}, worse "
                f"{int((values > 2 * errors).sum()):2d}; mean {values.mean():+.4f}; worst set {values.max():+.4f}"
            )
        print("\nshare of images where the rule takes the CNN (R2, R1, R2+m) and where the CNN is better; mean R2")
        for name, row in part["sets"].items():
            print(f"  {name:16s} R2 {row['share_cnn_R2']:.2f}  R1 {row['share_cnn_R1']:.2f}  R2+m "
                  f"{row['share_cnn_R2m']:.2f}  CNN better {row['share_cnn_better']:.2f}  LS undefined "
                  f"{row['ls_undefined']}  fit undefined {row['fit_undefined']}  R2 CNN {row['mean_r2_cnn']:.3f} "
                  f"LS {row['mean_r2_ls']:.3f}")  # fmt: skip
        print(f"LS with the true lot window (L = 32) on clean raw: {part['ls_true_l_clean_raw']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", default=str(HERE.parent / "bench-output" / "generalisation-data"))
    parser.add_argument("--work", default="/tmp/rule")
    parser.add_argument("--half", choices=("even", "odd"), default="odd", help="the cases to report (odd: held out)")
    parser.add_argument("--recompute", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / f"per_image_c{args.cases}_l{''.join(map(str, args.levels))}.npz"
    if cache.exists() and not args.recompute:
        stored = np.load(cache, allow_pickle=True)
        result = {key: stored[key] for key in stored.files}
    else:
        result = compute(args)
        np.savez(cache, **result)
    summary = report(result, args.half)
    print_report(summary, args.half)
    (work / f"summary_{args.half}.json").write_text(json.dumps(summary, indent=1))
    print(f"\nrun time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
