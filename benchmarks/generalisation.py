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
WORK/results.json. The estimators and corrections are in generalisation_methods.py, the report in
generalisation_report.py.
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
from generalisation_methods import Inversions, Model, correct_all, detector_overrides, score
from generalisation_report import write_report
from harness import (
    BENCHMARKS,
    SEED_STUDY_TARGETS,
    add_figures,
    add_output,
    echo_cfsx,
    generate_groups,
    invocation,
    spawn_pool,
)

from cfsx.interpretation.estimates import CNN, LEAST_SQUARES, ImageFacts, choose_final
from cfsx.physics.inversion import NO_WINDOW  # the lot size of "no lot window"

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
        generate_groups(folder, missing, workers)
    return paths


def ensure_models(work: Path, workers: int) -> list[Path]:
    """The reference models of the issue, made in ``work`` when missing (about 7 minutes each on 2 cores) by the
    installed cfsx (run from outside the source tree, whose cfsx/ has no compiled engine)."""
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DEFAULT_MODELS:
        data, model = work / f"{name}.h5", work / f"{name}.keras"
        if not model.exists():
            if not data.exists():
                echo_cfsx(
                    "simulate", name, "-o", str(data), "--workers", str(workers), *SEED_STUDY_TARGETS, cwd=BENCHMARKS
                )
            echo_cfsx("train", str(data), "-o", str(model), cwd=BENCHMARKS)
        paths.append(model)
    return paths


def installed_builtin_models() -> list[Path]:
    """The installed built-in general models (cfsx/learning/builtin/, make models), scored beside the references."""
    from cfsx.learning.builtin import builtin_models

    return [model.path for model in builtin_models() if model.path.is_file()]


# --- scoring --------------------------------------------------------------------------------------


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


# --- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("bench-output/generalisation-data"))
    parser.add_argument("--work", type=Path, default=Path("bench-output/generalisation"))
    parser.add_argument("--model", type=Path, action="append", help="a .keras model (repeatable)")
    add_output(parser, Path("docs/generalisation.md"), help_text=None)
    add_figures(parser, Path("docs/generalisation"))
    parser.add_argument("--groups", nargs="+", metavar="GROUP", help="a subset of the groups (default all)")
    parser.add_argument("--corrupted-cases", type=int, default=64, help="cases per group for the corrupted sets")
    parser.add_argument("--no-detector", dest="detector", action="store_false", help="leave the renders out")
    parser.add_argument("--refine-cases", type=int, default=8, help="clean images refined per model (0: none)")
    parser.add_argument("--rule-cases", type=int, default=48, help="images per set for the decoded-misfit rule")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    command = invocation("generalisation.py", argv)
    started = time.perf_counter()

    paths = ensure_data(args.data, args.workers)
    if args.groups:
        paths = [path for path in paths if path.stem in args.groups]
    model_paths = args.model or [*ensure_models(args.work, args.workers), *installed_builtin_models()]
    pool = spawn_pool(args.workers)  # before TensorFlow: workers need only cfsx.correction
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
