"""The worked examples of docs/interpretation.md: cfsx interpret on synthetic detector images of known
truth and on the real ZrO2 plane, with a CFS4 model trained at the standard settings.

The model is --model when it exists (make reproduce writes study-output/cfs4-small.keras), else
it is made here: 5000 CFS4 samples and the small CNN with configs/train.yaml (minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
from harness import ROOT, SEED_STUDY_TARGETS, ZRO2_PLANE, machine_line, markdown_table, replace_block, run_cfsx

from cfsx.physics import engine
from cfsx.physics.metrics import image_r2, regression_metrics
from cfsx.simulation.detector import CORRUPTIONS, Detector


def ensure_model(model: Path, work: Path) -> Path:
    if model.exists():
        return model
    model = work / "cfs4-small.keras"
    if not model.exists():
        run_cfsx("simulate", "cfs4", "-o", str(work / "cfs4.h5"), *SEED_STUDY_TARGETS, cwd=work)
        run_cfsx("train", str(work / "cfs4.h5"), "-o", str(model), cwd=work)
    return model


def synthetic(model: Path, work: Path, docs: Path, count: int) -> str:
    data = work / "unseen.h5"
    if not data.exists():
        run_cfsx("simulate", "cfs4", "-o", str(data), "--samples", str(count), "--seed", "4243", *SEED_STUDY_TARGETS,
             cwd=work)  # fmt: skip
    with h5py.File(data) as file:
        lattices, truth = file["lattices"][()], file["encodings/achieved"][()]
    # The detector shows the exact all-origins lot average; that is the clean truth of each image.
    clean = np.stack([engine.all_lots_intensity(lattice, 25, 64, 1.0) for lattice in lattices])
    detector = Detector()
    folder = work / "detector"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, lattice in enumerate(lattices):
        raw = detector.corrupt(detector.render(lattice, 25), set(CORRUPTIONS), rng, 3.0)
        np.save(folder / f"image-{index:02d}.npy", raw.astype(np.float32))
    calibration = [f"--correct-set={item}" for item in detector.correction_overrides()]
    seconds = run_cfsx("interpret", "--model", str(model), str(folder), "-o", str(work / "synthetic"), "--refine",
                   *calibration, cwd=work)  # fmt: skip
    document = json.loads((work / "synthetic" / "results.json").read_text())
    with h5py.File(work / "synthetic" / "results.h5") as file:
        decoded, observed = file["decoded/images"][:, 0], file["observed"][()]
        estimates = {name: file[f"encodings/{name}"][()] for name in ("cnn", "least_squares", "refined", "final")}
        sigma = file["uncertainty/replicates"][()]
    cnn, final = estimates["cnn"], estimates["final"]
    shutil.copy(work / "synthetic" / document["images"][0]["figure"], docs / "interpretation" / "synthetic.png")
    labels = document["labels"]
    records = document["images"]

    def mean_of(key):
        return np.mean([key(r) for r in records])

    def against_clean(images: np.ndarray) -> float:
        return float(
            image_r2(clean, images * (clean.mean(axis=(1, 2)) / images.mean(axis=(1, 2)))[:, None, None]).mean()
        )

    methods = ("cnn", "least_squares", "refined")

    def decoded_r2(name: str) -> str:
        return f"{mean_of(lambda r: r['estimates'][name]['decoded_image_r2']['mean']):.3f}"

    rows = [
        ("encoding R2 against the true (achieved) alpha",
         *(f"{regression_metrics(truth, estimates[name], labels)['r2']:.3f}" for name in (*methods, "final"))),
        ("encoding MAE", *(f"{np.abs(estimates[name] - truth).mean():.4f}" for name in (*methods, "final"))),
        ("image R2, decoded against the corrected observation (4 seeds)", *(decoded_r2(name) for name in methods),
         f"{mean_of(lambda r: r['decoded']['image_r2']['mean']):.3f}"),
        ("refinement objective (decoded R2, refinement seeds): start -> refined", "-", "-",
         f"{mean_of(lambda r: r['refinement']['from_cnn']['start']['decoded_r2']):.3f} -> "
         f"{mean_of(lambda r: r['refinement']['from_cnn']['refined']['decoded_r2']):.3f}", "-"),
        ("the same refinement started from zero correlations", "-", "-",
         f"{mean_of(lambda r: r['refinement']['from_zero']['refined']['decoded_r2']):.3f}", "-"),
    ]  # fmt: skip
    sources = ", ".join(f"{name} {count}" for name, count in document["summary"]["final_sources"].items() if count)
    summary = markdown_table(("mean over the images", "CNN", "least squares", "refined", "final answer"), rows)
    first = [
        (label, f"{truth[0, i]:+.3f}", f"{cnn[0, i]:+.3f} ± {sigma[0, i]:.3f}",
         f"{estimates['least_squares'][0, i]:+.3f}", f"{estimates['refined'][0, i]:+.3f}", f"{final[0, i]:+.3f}")
        for i, label in enumerate(labels)
    ]  # fmt: skip
    detail = markdown_table(("component", "truth", "CNN ± replicate spread", "least squares", "refined", "final"),
                            first)  # fmt: skip
    errors = np.abs(cnn - truth)
    coverage = (
        f"Is the replicate spread an honest error bar? Over the {errors.size} component values, "
        f"{100 * np.mean(errors <= sigma):.0f} % of the CNN's errors lie within 1 sigma and "
        f"{100 * np.mean(errors <= 2 * sigma):.0f} % within 2 sigma (68 % and 95 % for a Gaussian error); the "
        f"correlation between error and sigma is {np.corrcoef(errors.ravel(), sigma.ravel())[0, 1]:.2f}."
    )
    return (
        f"{machine_line('make interpretation-example')} {count} CFS4 structures never seen in training, rendered "
        f"as 512 x 512 detector images with {', '.join(CORRUPTIONS)} (3 counts per pixel); `cfsx interpret "
        f"--refine` with their calibration took {seconds:.1f} s for all {count} from the command line "
        f"({document['seconds']['refine']:.1f} s of it refinement). Final answers: {sources}.\n\n{summary}\n\n"
        f"Decoded image (first replicate of the final answer) against the CLEAN simulated image: mean R2 "
        f"{against_clean(decoded):.3f}. Observation against the clean image after correction: mean R2 "
        f"{against_clean(observed):.3f}."
        f" {coverage}\n\nImage 0 component by component:\n\n{detail}\n"
    )


def zro2(model: Path, work: Path, docs: Path) -> str:
    seconds = run_cfsx("interpret", "--model", str(model), str(ZRO2_PLANE), "-o", str(work / "zro2"), "--refine",
                   "--lattice", "F", "--correct-set", "mask.edge=2", cwd=work)  # fmt: skip
    document = json.loads((work / "zro2" / "results.json").read_text())
    record = document["images"][0]
    shutil.copy(work / "zro2" / record["figure"], docs / "interpretation" / "zro2.png")
    refinement = record["refinement"]

    def decoded(name: str) -> str:
        r2 = record["estimates"][name]["decoded_image_r2"]
        return f"{r2['mean']:.3f} ± {r2['std']:.3f}"

    rows = [
        ("CNN encoding, decoded (4 seeds)", decoded("cnn")),
        ("least-squares encoding (no lot window), decoded (same 4 seeds)", decoded("least_squares")),
        ("refined from the CNN, decoded (same 4 seeds)", decoded("refined")),
        ("refinement objective from the CNN: start -> refined", f"{refinement['from_cnn']['start']['decoded_r2']:.3f}"
         f" -> {refinement['from_cnn']['refined']['decoded_r2']:.3f}"),
        ("refinement objective from zero: start -> refined", f"{refinement['from_zero']['start']['decoded_r2']:.3f}"
         f" -> {refinement['from_zero']['refined']['decoded_r2']:.3f}"),
        ("expected (Warren-Cowley) image of the refined encoding",
         f"{refinement['from_cnn']['refined']['expected_r2']:.3f}"),
    ]  # fmt: skip
    sigma = record["uncertainty"]["replicates"]
    encoding = ", ".join(
        f"{label} {value:+.2f} ± {sigma[label]:.2f}" for label, value in record["cnn_encoding"].items()
    )
    final = ", ".join(f"{label} {value:+.2f}" for label, value in record["encoding"].items())
    table = markdown_table(("image R2 against the corrected plane", "value"), rows)
    return (
        f"{machine_line('make interpretation-example')} "
        "`cfsx interpret MODEL ZrO2.nxs --lattice F --correct-set mask.edge=2 --refine`: "
        f"{seconds:.1f} s from the command line.\n\n{table}"
        f"\n\nCNN encoding ± replicate spread: {encoding}.\n\nFinal answer ({record['final_source']}): {final}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "study-output" / "cfs4-small.keras")
    parser.add_argument("--work", type=Path, default=ROOT / "study-output" / "interpretation")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    (args.docs / "interpretation").mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.model.resolve(), work)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    document = args.docs / "interpretation.md"
    replace_block(document, "example:synthetic", synthetic(model, work, args.docs, args.images))
    if ZRO2_PLANE.exists():
        replace_block(document, "example:zro2", zro2(model, work, args.docs))
    print(f"wrote {document}")


if __name__ == "__main__":
    main()
