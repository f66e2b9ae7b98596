"""Reproduce the seed study with cfsx's own commands and write docs/results.md.

Generates the datasets (5000 each of CFS2, CFS3, CFS4; 10000 CFS4; 5000 CFS4 hi-res), trains
the small and large models, evaluates them (the CFS4 evaluation also decodes the CFS2 and CFS3
models' predictions), and writes the report with the figures. Datasets and models stay in
the work directory (default study-output/); only the report and figures go to docs/.
Each step is skipped when its output exists, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from harness import CFSX, SEED_STUDY_TARGETS, load_times, markdown_table, replace_block, run_logged, save_times

DATASETS = {  # name: (config, samples, overrides)
    "cfs2": ("cfs2", 5000, []),
    "cfs3": ("cfs3", 5000, SEED_STUDY_TARGETS),
    "cfs4": ("cfs4", 5000, SEED_STUDY_TARGETS),
    "cfs4-10k": ("cfs4", 10000, SEED_STUDY_TARGETS),
    "cfs4-hires": ("cfs4-hires", 5000, []),
    # Not in the seed study: the standard lattice and lot size, averaged over every lot origin (no lot noise).
    "cfs4-all": ("cfs4", 5000, [*SEED_STUDY_TARGETS, "--set", "diffraction.n_lots=all"]),
}
RUNS = [  # (model name, dataset, architecture, D of the seed table, seed MSE, seed R2)
    ("cfs2-small", "cfs2", "small", 3, 6.5e-4, 0.997),
    ("cfs3-small", "cfs3", "small", 8, 1.9e-3, 0.986),
    ("cfs4-small", "cfs4", "small", 15, 2.4e-3, 0.974),
    ("cfs4-10k-small", "cfs4-10k", "small", 15, 3.0e-4, 0.997),
    ("cfs4-10k-large", "cfs4-10k", "large", 15, 2.2e-3, 0.976),
    ("cfs4-hires-small", "cfs4-hires", "small", 15, None, None),
    ("cfs4-all-small", "cfs4-all", "small", 15, None, None),
]
STEPS = ("simulate", "train", "evaluate")
SEED_DECODED = {3: (-0.034, 0.309), 8: (0.113, 0.265), 15: (0.675, 0.097)}  # D: (image R2, image MSE)


def planned_steps(work: Path, epochs: int) -> list[tuple[str, Path, list[str]]]:
    """(key, output, cfsx arguments) of every step, in order; tests/test_command_lines.py parses them."""
    steps = []
    for name, (config, samples, overrides) in DATASETS.items():
        data = str(work / f"{name}.h5")
        steps.append((f"simulate {name}", work / f"{name}.h5",
                      ["simulate", config, "-o", data, "--samples", str(samples), *overrides]))  # fmt: skip
    for model, data, architecture, *_ in RUNS:
        arguments = ["train", str(work / f"{data}.h5"), "-o", str(work / f"{model}.keras"), "--arch", architecture]
        steps.append((f"train {model}", work / f"{model}.keras", [*arguments, "--epochs", str(epochs)]))
    for model, data, *_ in RUNS:
        compare = []
        if model == "cfs4-small":  # the decoded-image test of the seed: D = 3, 8, 15 models on CFS4 images
            compare = ["--compare", str(work / "cfs2-small.keras"), "--compare", str(work / "cfs3-small.keras")]
        report = work / f"{model}-report"
        steps.append((f"evaluate {model}", report / "metrics.json", ["evaluate", str(work / f"{model}.keras"),
                      str(work / f"{data}.h5"), "-o", str(report), *compare]))  # fmt: skip
    report = work / "cfs4-small-corrupted-report"
    arguments = ["evaluate", str(work / "cfs4-small.keras"), str(work / "cfs4.h5"), "-o", str(report), "--corrupt", "3"]
    steps.append(("evaluate cfs4-small on corrupted images", report / "metrics.json", arguments))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("study-output"), help="datasets, models, reports")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where results.md and figures go")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(exist_ok=True)
    log = work / "reproduce.log"
    times_path = work / "times.json"
    times = load_times(times_path)
    began = time.perf_counter()
    for key, output, arguments in planned_steps(work, args.epochs):
        if not output.exists():
            times[key] = run_logged([*CFSX, *arguments], log)  # run from the work directory
            save_times(times_path, times)
    times["this invocation of make reproduce (wall)"] = time.perf_counter() - began
    times["all steps (sum)"] = sum(value for key, value in times.items() if key.split()[0] in STEPS)
    save_times(times_path, times)
    write_report(work, args.docs, times)


def lot_sampling_ceiling(data: Path, model: Path, count: int = 300) -> dict[str, float]:
    """Score, against the labels, the alpha measured inside the lots of each hold-out sample.

    An image made from K lots shows the correlations of the sites in those lots, not those of the
    whole periodic lattice (the label); no estimator that reads the image can undo that sampling
    noise, so this R2 is (close to) the best any method can reach on these data.
    """
    import h5py
    import numpy as np

    from cfsx.config import config_from_yaml_text
    from cfsx.learning.model_card import read_model_card
    from cfsx.physics import engine
    from cfsx.physics.encoding import cfs_vectors, vector_labels
    from cfsx.physics.metrics import regression_metrics
    from cfsx.simulation import simulate_sample

    indices = read_model_card(model).hold_out_indices[:count]
    with h5py.File(data) as file:
        config = config_from_yaml_text(file.attrs["config"])
        labels = file["encodings/achieved"][indices]
        seeds = file["seeds"][indices]
    vectors = cfs_vectors(config.encoding.cfs)
    measured = []
    for seed, label in zip(seeds, labels, strict=True):
        sample = simulate_sample(config, int(seed))
        if not np.array_equal(sample["achieved"], label):
            sys.exit(f"sample with seed {seed} of {data} is not reproduced by its seed")
        measured.append(
            engine.lot_alpha(sample["lattices"], vectors, config.diffraction.lot_size, sample["lot_origins"])
        )
    return regression_metrics(labels, np.array(measured), vector_labels(vectors))


def read_report(folder: Path):
    """The EvaluationReport that cfsx evaluate wrote into ``folder`` (its metrics.json)."""
    from cfsx.learning.evaluation_report import EvaluationReport

    return EvaluationReport.from_json((folder / "metrics.json").read_text())


def write_report(work: Path, docs: Path, times: dict[str, float]) -> None:
    figures = docs / "results"
    figures.mkdir(parents=True, exist_ok=True)
    lines = [
        "Written by `make reproduce` (benchmarks/reproduce.py), which runs only cfsx commands; the command log is "
        "in study-output/reproduce.log. Hold-out: 10 % of each dataset that training never sees (not for "
        "gradients, not for choosing the epoch); the seed reported on its 20 % validation split.",
        "",
        "## Encodings on the hold-out",
        "",
    ]
    rows = []
    for model, data, architecture, dimension, seed_mse, seed_r2 in RUNS:
        report = read_report(work / f"{model}-report")
        cnn, classical = report.cnn, report.classical
        samples = DATASETS[data][1]
        seed_cells = (f"{seed_mse:.1e}", f"{seed_r2:.3f}") if seed_mse else ("-", "-")
        label = f"{samples} ({data})" if data in ("cfs4-hires", "cfs4-all") else str(samples)
        scores = (f"{cnn.mse:.1e}", f"{cnn.r2:.4f}", f"{cnn.mean_residual:+.1e}", f"{classical.r2:.4f}")
        rows.append((str(dimension), architecture, label, *seed_cells, *scores, str(report.training.best_epoch)))
        for figure in ("parity.png", "residuals.png", "training.png"):
            shutil.copy(work / f"{model}-report" / figure, figures / f"{model}-{figure}")
    header = ("D", "arch", "samples", "seed MSE", "seed R2", "cfsx MSE", "cfsx R2", "cfsx mean residual",
              "classical R2", "best epoch")  # fmt: skip
    lines += [
        markdown_table(header, rows),
        "",
        "## What the images can tell: lot sampling",
        "",
        "The alpha measured inside the lots that made each image, scored against the label (the alpha of "
        "the whole periodic lattice), on the first 300 hold-out samples, each re-simulated from its seed "
        "(and checked to reproduce its label exactly). No method that reads the image can beat this by much.",
        "",
    ]
    rows = []
    for data, model in (("cfs4", "cfs4-small"), ("cfs4-hires", "cfs4-hires-small")):
        ceiling = lot_sampling_ceiling(work / f"{data}.h5", work / f"{model}.keras")
        report = read_report(work / f"{model}-report")
        lots = "8 of 25x25 on 50x50" if data == "cfs4" else "64 of 48x48 on 96x96"
        rows.append((data, lots, f"{ceiling['r2']:.4f}", f"{ceiling['mse']:.1e}", f"{report.cnn.r2:.4f}",
                     f"{report.classical.r2:.4f}"))  # fmt: skip
    lines.append(markdown_table(("data", "lots", "lots' own alpha: R2", "MSE", "CNN R2", "classical R2"), rows))
    decoded_report = read_report(work / "cfs4-small-report")
    lines += [
        "",
        "## Decoded images (CFS4 hold-out images, predicted encodings simulated again)",
        "",
        f"{decoded_report.decoded_count} images. Image R2 and MSE of the decoded image against the input image "
        "(median over images; intensities per site). The floor is the same comparison for the true encoding "
        "re-simulated.",
        "",
    ]
    rows = []
    for name, scores in decoded_report.decoded.items():
        dimension = 3 if "CFS2" in name else 8 if "CFS3" in name else 15 if name == "decoded CNN" else None
        seed = (f"{SEED_DECODED[dimension][0]:.3f}", f"{SEED_DECODED[dimension][1]:.3f}") if dimension else ("-", "-")
        rows.append((name, *seed, f"{scores.image_r2.median:.3f}", f"{scores.image_mse.median:.2e}"))
    header = ("encoding from", "seed image R2", "seed image MSE", "cfsx image R2 (median)", "cfsx image MSE (median)")
    lines.append(markdown_table(header, rows))
    corrupted = read_report(work / "cfs4-small-corrupted-report").corrupted
    lines += [
        "",
        "## CNN and classical inversion on corrupted detector images (CFS4 hold-out)",
        "",
        f"{corrupted.cnn.samples} hold-out structures rendered as 512 x 512 detector images with "
        f"{', '.join(corrupted.corruptions)} ({corrupted.flux:g} counts per pixel), corrected by cfsx correct "
        "(`cfsx evaluate --corrupt 3`):",
        "",
        markdown_table(
            ("method", "R2", "MSE"),
            [
                (name, f"{scores.r2:.4f}", f"{scores.mse:.1e}")
                for name, scores in (("CNN", corrupted.cnn), ("Warren-Cowley least squares", corrupted.classical))
            ],
        ),  # fmt: skip
    ]
    for figure in ("image-r2.png", "images.png"):
        shutil.copy(work / "cfs4-small-report" / figure, figures / f"cfs4-small-{figure}")
    lines += [
        "",
        "![image R2](results/cfs4-small-image-r2.png)",
        "",
        "![examples](results/cfs4-small-images.png)",
        "",
        "## Run times (this machine)",
        "",
        markdown_table(("step", "seconds"), [(key, f"{value:.0f}") for key, value in times.items()]),
        "",
        "## Figures",
        "",
    ]
    for model, *_ in RUNS:
        lines += [f"### {model}", ""]
        for figure in ("parity", "residuals", "training"):
            lines += [f"![{model} {figure}](results/{model}-{figure}.png)", ""]
    report = docs / "results.md"
    if not report.exists():
        report.write_text("# Reproducing the seed study\n")
    replace_block(report, "reproduce", "\n".join(lines))
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
