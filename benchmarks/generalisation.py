"""The generalisation benchmark: cfsx's CNNs and the classical least squares on independent data.

Scores every given model (``--model``, repeatable; without one, the reference CFS2 and CFS4 models of
the seed protocol are made in the work directory with ``cfsx simulate`` and ``cfsx train``) and the
Warren-Cowley least squares (cfsx.physics.inversion) on the benchmark of benchmarks/generalisation_data.py
(made first when missing): exchange Monte Carlo lattices that cfsx's engine never saw, in six
imaging groups, as clean lot-averaged images, exact all-origins images, corrupted images (six kinds
at three levels) fed raw and after ``cfsx correct`` with its defaults (uncalibrated: the whole
image is the window), and 512 x 512 detector renders corrected with their known calibration.

Methods per image set: CNN (``predict_encodings`` with the transposed-image average, as
``cfsx interpret`` runs it), least squares with no lot window (an image of unknown origin: the
Fejer window of an infinite lot, i.e. none), least squares told the group's true lot size L, and
(optionally, on a few clean images) the CNN refined by cfsx.interpretation.refinement as ``interpret --refine``.
Writes the marked block of docs/generalisation.md, its figures, and every score to
WORK/results.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from report import SEED_STUDY_TARGETS, markdown_table, replace_block

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generalisation_data as gd  # noqa: E402

from cfsx.interpretation.estimates import CNN, FINAL_RULE, LEAST_SQUARES, ImageFacts, choose_final  # noqa: E402
from cfsx.physics.inversion import NO_WINDOW  # noqa: E402  (the lot size of "no lot window")

# The reference models: built-in configs with the seed study's targets, 5000 samples, default training.
DEFAULT_MODELS = ("cfs2", "cfs4")
PARITY_GROUP = "n64-l32-k8"
# Image sets of the parity group on which the alternative final-answer rule (lowest decoded misfit) is scored.
RULE_SETS = (
    ("clean", "-", 0, "raw"),
    ("corrupted", "bragg", 2, "corrected"),
    ("corrupted", "combined", 2, "corrected"),
)


# --- data and models ------------------------------------------------------------------------------


def ensure_data(folder: Path, workers: int) -> list[Path]:
    """The six group files; the generator is run for the missing ones (about 10 minutes for all six)."""
    paths = [folder / f"{spec.name}.h5" for spec in gd.GROUPS]
    missing = [spec.name for spec, path in zip(gd.GROUPS, paths, strict=True) if not path.exists()]
    if missing:
        print(f"generating the benchmark data for {', '.join(missing)} (about 2 minutes per group)", flush=True)
        command = [sys.executable, str(HERE / "generalisation_data.py"), "--output", str(folder)]
        subprocess.run([*command, "--groups", *missing, "--workers", str(workers)], check=True)
    return paths


def cfsx_command(*arguments: str) -> None:
    """Run the installed cfsx (from outside the source tree, whose cfsx/ has no compiled engine)."""
    command = [sys.executable, "-m", "cfsx", *arguments]
    print("+ cfsx " + " ".join(arguments), flush=True)
    subprocess.run(command, check=True, cwd=HERE)


def ensure_models(work: Path, workers: int) -> list[Path]:
    """The reference models of the issue, made in ``work`` when missing (about 7 minutes each on 2 cores)."""
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DEFAULT_MODELS:
        data, model = work / f"{name}.h5", work / f"{name}.keras"
        if not model.exists():
            if not data.exists():
                cfsx_command("simulate", name, "-o", str(data), "--workers", str(workers), *SEED_STUDY_TARGETS)
            cfsx_command("train", str(data), "-o", str(model))
        paths.append(model)
    return paths


def installed_builtin_models() -> list[Path]:
    """The installed built-in general models (cfsx/learning/builtin/, make models), scored beside the references."""
    from cfsx.learning.builtin import builtin_models

    return [model.path for model in builtin_models() if model.path.is_file()]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Model:
    """A loaded model with its provenance."""

    def __init__(self, path: Path, names: set[str]):
        from cfsx.learning.models import load_model
        from cfsx.physics.encoding import transpose_permutation

        self.path = Path(path)
        self.network, card = load_model(path)
        self.metadata = card.metadata
        self.cfs = int(self.metadata["cfs"])
        self.vectors = np.asarray(self.metadata["vectors"])
        self.permutation = transpose_permutation(self.vectors)
        name = f"CNN-CFS{self.cfs}"
        self.name = name if name not in names else f"{name} ({self.path.stem})"
        test = self.metadata.get("metrics", {}).get("test", {})
        training = self.metadata.get("training", {})
        self.provenance = {
            "path": str(path),
            "sha256": sha256(self.path),
            "cfs": self.cfs,
            "created": self.metadata.get("created"),
            "holdout_r2": test.get("r2"),
            "holdout_mae": test.get("mae"),
            "holdout_samples": test.get("samples"),
            "epochs_run": training.get("epochs_run"),
            "best_epoch": training.get("best_epoch"),
            "data": training.get("data"),
            "lot_size": self.metadata.get("lot_size"),
        }

    def predict(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        from cfsx.learning.models import predict_encodings

        return predict_encodings(self.network, images.astype(np.float32), self.permutation, batch_size)[0]


# --- corrections (in worker processes) -------------------------------------------------------------

_CONFIGS: dict = {}


def _config(overrides: tuple[str, ...]):
    from cfsx.config import CorrectionConfig, load_config

    if overrides not in _CONFIGS:
        _CONFIGS[overrides] = load_config("correct", list(overrides), root=CorrectionConfig)
    return _CONFIGS[overrides]


def correct_chunk(job: tuple) -> tuple[np.ndarray, int, list]:
    """``cfsx correct`` on each image: (images, per-image overrides, masks or None) -> (images, failures,
    each image's ImageFacts (what the final answer knows of it; not corrected for a refused one)).

    An image the correction refuses (too little measured) becomes NaN and is counted.
    """
    from cfsx.correction import correct_image
    from cfsx.errors import CfsxError
    from cfsx.interpretation.estimates import ImageFacts

    images, overrides, masks = job
    out, failures, facts = np.full((len(images), 64, 64), np.nan), 0, [ImageFacts(False)] * len(images)
    for index, image in enumerate(images):
        extra = None if masks is None else masks[index] > 0
        try:
            corrected = correct_image(image, _config(tuple(overrides[index])), extra_mask=extra)
        except CfsxError:
            failures += 1
            continue
        out[index] = corrected.image
        facts[index] = ImageFacts.of({"steps": corrected.provenance}, corrected.mask, corrected.image,
                                     corrected.variance, 1.0)  # fmt: skip
    return out, failures, facts


def detector_overrides(pixels_per_rlu: float, origin) -> list[str]:
    """The calibration of a render (cfsx.simulation.detector.Detector.correction_overrides' recipe)."""
    return [
        f"geometry.origin=[{int(origin[0])}, {int(origin[1])}]",
        f"geometry.pixels_per_rlu=[{pixels_per_rlu}, {pixels_per_rlu}]",
        "bragg.method=lattice",
        "mask.zeros=values",
    ]


def correct_all(pool, jobs: dict[str, tuple]) -> dict[str, tuple[np.ndarray, int, int]]:
    """Run the named correction jobs in chunks of ``CHUNK`` images on the pool (or here)."""
    chunk = 25
    pieces = {}
    for name, (images, overrides, masks) in jobs.items():
        for start in range(0, len(images), chunk):
            part = slice(start, start + chunk)
            piece = (images[part], overrides[part], None if masks is None else masks[part])
            pieces[(name, start)] = pool.submit(correct_chunk, piece) if pool else piece
    results: dict[str, list] = {name: [] for name in jobs}
    for (name, _), future in pieces.items():
        results[name].append(future.result() if pool else correct_chunk(future))
    return {
        name: (
            np.concatenate([part[0] for part in parts]),
            sum(part[1] for part in parts),
            [fact for part in parts for fact in part[2]],
        )
        for name, parts in results.items()
    }


# --- scoring --------------------------------------------------------------------------------------


def score(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """MAE and mean R2 over components; non-finite predictions count as 0 (no correlation) and are counted."""
    from cfsx.physics.metrics import r2_per_component

    finite = np.isfinite(predicted).all(axis=1)
    predicted = np.where(np.isfinite(predicted), predicted, 0.0)
    return {
        "mae": float(np.abs(predicted - truth).mean()),
        "r2": float(r2_per_component(truth, predicted).mean()),
        "n": int(len(truth)),
        "nonfinite": int((~finite).sum()),
    }


class Inversions:
    """WarrenCowleyInversion per (CFS, lot size), built once."""

    def __init__(self):
        self.cache = {}

    def __call__(self, cfs: int, lot_size: int, images: np.ndarray) -> np.ndarray:
        from cfsx.physics.encoding import cfs_vectors
        from cfsx.physics.inversion import WarrenCowleyInversion

        key = (cfs, lot_size)
        if key not in self.cache:
            self.cache[key] = WarrenCowleyInversion(cfs_vectors(cfs), 64, 1.0, lot_size)
        with np.errstate(all="ignore"):
            return self.cache[key](images)


def image_sets(data: dict, corrupted_cases: int) -> dict[tuple, np.ndarray]:
    """(image, kind, level, treatment) -> raw images to score; 'corrected' sets are filled in later."""
    sets = {("clean", "-", 0, "raw"): data["images_clean"], ("all-origins", "-", 0, "raw"): data["images_all_origins"]}
    for kind in gd.KINDS:
        for level in gd.LEVELS:
            sets[("corrupted", kind, level, "raw")] = data[f"images_corrupted/{kind}/{level}"][:corrupted_cases]
    return sets


def cases_of(key: tuple, cases: int, corrupted_cases: int, detector_cases: int) -> slice:
    if key[0] == "detector":
        return slice(0, detector_cases)
    if key[0] == "corrupted" or key[3] == "corrected":
        return slice(0, corrupted_cases)
    return slice(0, cases)


def run_group(path: Path, models: list[Model], inversions: Inversions, pool, args) -> tuple[list[dict], dict]:
    """Every score of one group, and the clean predictions (for the parity figure)."""
    started = time.perf_counter()
    data = gd.load_group(path, detector=args.detector)
    attrs = data["attrs"]
    name, lot_size, cases = attrs["name"], int(attrs["L"]), len(data["images_clean"])
    corrupted_cases = min(args.corrupted_cases, cases)
    sets = image_sets(data, corrupted_cases)
    defaults = [[] for _ in range(corrupted_cases)]
    jobs = {("clean", "-", 0, "corrected"): (data["images_clean"][:corrupted_cases], defaults, None)}
    for kind in gd.KINDS:
        for level in gd.LEVELS:
            jobs[("corrupted", kind, level, "corrected")] = (sets[("corrupted", kind, level, "raw")], defaults, None)
    detector_cases = 0
    if args.detector and "detector_clean" in data:
        detector_cases = len(data["detector_clean"])
        origin = attrs["detector_origin"]
        calibrated = [detector_overrides(p, origin) for p in data["detector_pixels_per_rlu"]]
        jobs[("detector", "-", 0, "calibrated")] = (data["detector_clean"], calibrated, None)
        for kind in gd.KINDS:
            for level in gd.LEVELS:
                masks = data.get(f"detector_masks/{kind}/{level}")
                jobs[("detector", kind, level, "calibrated")] = (
                    data[f"detector_corrupted/{kind}/{level}"],
                    calibrated,
                    masks,
                )
    corrected = correct_all(pool, {str(key): job for key, job in jobs.items()})
    failures, bragg, facts = {}, {}, {key: [ImageFacts(False)] * len(images) for key, images in sets.items()}
    for key in jobs:
        sets[key], failures[key], facts[key] = corrected[str(key)]
        bragg[key] = sum(fact.bragg_share > 0 for fact in facts[key])
    data = {key: value for key, value in data.items() if not key.startswith("detector")}  # large: drop the renders
    seconds_correct = time.perf_counter() - started

    keys = list(sets)
    stacked = np.concatenate([sets[key] for key in keys])
    bounds = np.cumsum([0] + [len(sets[key]) for key in keys])
    predictions = {}
    for model in models:
        flat = model.predict(np.nan_to_num(stacked), args.batch_size)
        predictions[model.name] = {key: flat[bounds[i] : bounds[i + 1]] for i, key in enumerate(keys)}
    for cfs in sorted({model.cfs for model in models}):
        for label, lot in ((f"LS-CFS{cfs} no window", NO_WINDOW), (f"LS-CFS{cfs} true L", lot_size)):
            flat = inversions(cfs, lot, np.nan_to_num(stacked))
            predictions[label] = {key: flat[bounds[i] : bounds[i + 1]] for i, key in enumerate(keys)}
        # The final answer as interpret gives it: its rule on the CNN and the no-window fit, the images through
        # correct (corrected, calibrated) counted as interpret's raw images, the raw sets as simulated data.
        model = next(model for model in models if model.cfs == cfs)
        cnn, fitted = predictions[model.name], predictions[f"LS-CFS{cfs} no window"]
        architecture = model.metadata["training"]["config"]["model"]["architecture"]
        predictions[f"final-CFS{cfs}"] = {
            key: choose_final({CNN: cnn[key], LEAST_SQUARES: fitted[key]}, facts[key], architecture).final
            for key in keys
        }  # fmt: skip

    rows = []
    for method, per_set in predictions.items():
        cfs = int(method.split("CFS")[1][0])
        for key in keys:
            truth = data[f"alpha_cfs{cfs}"][cases_of(key, cases, corrupted_cases, detector_cases)]
            image, kind, level, treatment = key
            rows.append(
                {
                    "group": name,
                    "image": image,
                    "kind": kind,
                    "level": level,
                    "treatment": treatment,
                    "method": method,
                    "cfs": cfs,
                    "correction_failures": failures.get(key, 0),
                    "bragg_masked": bragg.get(key, 0),
                    **score(truth, per_set[key]),
                }
            )
    parity = {method: per_set[("clean", "-", 0, "raw")] for method, per_set in predictions.items()}
    parity.update({f"truth-CFS{cfs}": data[f"alpha_cfs{cfs}"] for cfs in (2, 3, 4)})
    parity["clean_images"] = data["images_clean"]
    parity["group"] = name
    parity["rule_sets"] = {key: (sets[key], predictions) for key in RULE_SETS}
    print(
        f"{name}: {len(rows)} scores in {time.perf_counter() - started:.0f} s (corrections {seconds_correct:.0f} s)",
        flush=True,
    )
    return rows, parity


def refine_subsample(model: Model, parity: dict, cases: int) -> list[dict]:
    """interpret --refine (from the CNN only) on the first clean images of the parity group."""
    from cfsx.config import RefineConfig, config_from_yaml_text
    from cfsx.interpretation.interpret import _refine_all
    from cfsx.physics.encoding import vector_labels

    simulation = config_from_yaml_text(model.metadata["simulation_config"])
    images = parity["clean_images"][:cases].astype(np.float64)
    cnn = parity[model.name][:cases]
    truth = parity[f"truth-CFS{model.cfs}"][:cases]
    started = time.perf_counter()
    settings = RefineConfig(enabled=True, from_zero=False)
    _, refined = _refine_all(images, cnn, simulation, model.vectors, vector_labels(model.vectors), settings, None)
    seconds = (time.perf_counter() - started) / max(cases, 1)
    rows = []
    for method, estimate in (
        (model.name, cnn),
        (f"{model.name} refined", refined),
        (f"LS-CFS{model.cfs} true L", parity[f"LS-CFS{model.cfs} true L"][:cases]),
        (f"LS-CFS{model.cfs} no window", parity[f"LS-CFS{model.cfs} no window"][:cases]),
    ):
        rows.append(
            {"method": method, "seconds_per_image": seconds if "refined" in method else None, **score(truth, estimate)}
        )
    return rows


def decoded_misfit_rule(model: Model, parity: dict, cases: int, workers: int) -> list[dict]:
    """The rule the issue suggested, scored against the stated one: per image, the estimate (CNN or least
    squares, no window) whose decoded images (interpret's decode settings: its default seeds and replicates)
    explain the observation best, on the first ``cases`` images of each RULE_SETS set of the parity group."""
    from cfsx.config import DecodeConfig, config_from_yaml_text
    from cfsx.simulation import decode_replicates, sample_seeds

    simulation = config_from_yaml_text(model.metadata["simulation_config"])
    settings = DecodeConfig()
    seeds = sample_seeds(settings.seed, settings.replicates)
    truth = parity[f"truth-CFS{model.cfs}"][:cases]
    rows = []
    for key, (images, predictions) in parity["rule_sets"].items():
        images = np.nan_to_num(images[:cases]).astype(np.float64)
        cnn = predictions[model.name][key][:cases]
        fitted = predictions[f"LS-CFS{model.cfs} no window"][key][:cases]
        usable = np.isfinite(fitted).all(axis=1)
        fitted = np.where(usable[:, None], fitted, cnn)
        misfit = {
            name: 1.0 - decode_replicates(simulation, values, images, seeds, workers).image_r2.mean(axis=1)
            for name, values in (("cnn", cnn), ("ls", fitted))
        }
        by_misfit = np.where((misfit["ls"] <= misfit["cnn"])[:, None], fitted, cnn)
        error = {name: np.abs(values - truth).mean(axis=1) for name, values in
                 (("cnn", cnn), ("ls", fitted), ("misfit", by_misfit))}  # fmt: skip
        rows.append({
            "set": " ".join(str(part) for part in key if part not in ("-", 0)),
            "method": model.name,
            "cnn": float(error["cnn"].mean()),
            "least_squares": float(error["ls"].mean()),
            "lowest_decoded_misfit": float(error["misfit"].mean()),
            "oracle": float(np.minimum(error["cnn"], error["ls"]).mean()),
            "least_squares_chosen": float((misfit["ls"] <= misfit["cnn"]).mean()),
            "better_chosen": float(((misfit["ls"] <= misfit["cnn"]) == (error["ls"] <= error["cnn"])).mean()),
            "n": int(len(images)),
        })  # fmt: skip
    return rows


def group_attributes(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as handle:
        return {key: gd._attr(value) for key, value in handle.attrs.items()}


# --- the report -----------------------------------------------------------------------------------


def mean_over_groups(rows: list[dict], **match) -> float:
    values = [row["mae"] for row in rows if all(row[key] == value for key, value in match.items())]
    return float(np.mean(values)) if values else float("nan")


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        f"Measured by `{command}` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores, shared), "
        f"in {seconds / 60:.1f} minutes with the data and models present.",
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
    if not args.output.exists():
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(title + intro)
    replace_block(args.output, "generalisation", "\n\n".join(parts))


# --- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("bench-output/generalisation-data"))
    parser.add_argument("--work", type=Path, default=Path("bench-output/generalisation"))
    parser.add_argument("--model", type=Path, action="append", help="a .keras model (repeatable)")
    parser.add_argument("--output", type=Path, default=Path("docs/generalisation.md"))
    parser.add_argument("--figures", type=Path, default=Path("docs/generalisation"))
    parser.add_argument("--groups", nargs="+", metavar="GROUP", help="a subset of the groups (default all)")
    parser.add_argument("--corrupted-cases", type=int, default=64, help="cases per group for the corrupted sets")
    parser.add_argument("--no-detector", dest="detector", action="store_false", help="leave the renders out")
    parser.add_argument("--refine-cases", type=int, default=8, help="clean images refined per model (0: none)")
    parser.add_argument("--rule-cases", type=int, default=48, help="images per set for the decoded-misfit rule")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    command = "python benchmarks/generalisation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()

    paths = ensure_data(args.data, args.workers)
    if args.groups:
        paths = [path for path in paths if path.stem in args.groups]
    model_paths = args.model or [*ensure_models(args.work, args.workers), *installed_builtin_models()]
    context = multiprocessing.get_context("spawn")  # before TensorFlow: workers need only cfsx.correction
    pool = ProcessPoolExecutor(args.workers, mp_context=context) if args.workers > 1 else None
    models: list[Model] = []
    for path in model_paths:
        models.append(Model(path, {model.name for model in models}))
    inversions = Inversions()
    rows, parity, parity_path = [], None, None
    try:
        for path in paths:
            group_rows, group_parity = run_group(path, models, inversions, pool, args)
            rows += group_rows
            if path.stem == PARITY_GROUP or parity is None:
                parity, parity_path = group_parity, path
    finally:
        if pool:
            pool.shutdown()
    attrs = group_attributes(parity_path)
    refine_rows = []
    if args.refine_cases > 0 and parity is not None:
        for model in models:
            print(f"refining {args.refine_cases} clean images with {model.name}", flush=True)
            refine_rows += refine_subsample(model, parity, args.refine_cases)
    rule_rows = []
    if args.rule_cases > 0 and parity is not None:
        for model in models:
            print(f"decoding CNN and least squares of {args.rule_cases} images per set with {model.name}", flush=True)
            rule_rows += decoded_misfit_rule(model, parity, args.rule_cases, args.workers)
    seconds = time.perf_counter() - started
    args.work.mkdir(parents=True, exist_ok=True)
    document = {
        "command": command,
        "seconds": seconds,
        "models": [m.provenance for m in models],
        "rows": rows,
        "refinement": refine_rows,
        "decoded_misfit_rule": rule_rows,
    }
    (args.work / "results.json").write_text(json.dumps(document, indent=1))
    write_report(args, rows, parity, refine_rows, rule_rows, models, attrs, seconds, command)
    print(f"wrote {args.output} in {seconds / 60:.1f} minutes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
