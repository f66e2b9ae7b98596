"""docs/models.md's pilot: what a wider model, longer training and more data each buy (issue 15).

Trains, with ``cfsx train --config train-general --set model.cfs=4``, on the data of ``make models``
(model-work/, made first by ``make models-cfs4`` or any ``make models-cfsN``):

- the baseline: ``hybrid``, 3 epochs, on three files (n32-l16-k8, n64-l32-k8 and the first's corrupted copy);
- ``small`` and ``wide`` (twice the filters and units of small) in its place: the architecture and its width;
- the baseline for 20 epochs: longer training;
- the baseline on all 16 files (every setting and its corrupted copy): more data;

then scores them together on two groups of the generalisation benchmark (benchmarks/generalisation.py,
``--groups n64-l32-k8 n128-l16-k64 --corrupted-cases 16 --no-detector``) and writes the marked block of
docs/models.md. A trained model is kept and not trained again (delete model-work/pilot/ to start afresh).
About 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from harness import CFSX, ROOT, add_output, load_times, markdown_table, mean_mae, replace_block, run_logged, save_times

GROUPS = ("n64-l32-k8", "n128-l16-k64")
BASE_FILES = ("general-n32-l16-k8.h5", "general-n64-l32-k8.h5", "general-n32-l16-k8-corrupted.h5")
# name -> (what it shows, architecture, epochs, all files?)
RUNS = {
    "hybrid-3": ("the baseline", "hybrid", 3, False),
    "small-3": ("architecture: the plain CNN", "small", 3, False),
    "wide-3": ("width: the plain CNN with twice the filters and units", "wide", 3, False),
    "hybrid-20": ("longer training: 20 epochs (early stopping after 8 without progress)", "hybrid", 20, False),
    "hybrid-all-3": ("more data: all 16 files (128 000 samples)", "hybrid", 3, True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "model-work", help="the data of make models")
    add_output(parser, ROOT / "docs" / "models.md", help_text=None)
    args = parser.parse_args()
    work = args.work.resolve()
    every = sorted(str(path) for path in work.glob("general-*.h5"))
    if len(every) != 16 or not all((work / name).exists() for name in BASE_FILES):
        raise SystemExit(f"{work} lacks the data of make models (16 files of configs/general-*.yaml and copies)")
    pilot = work / "pilot"
    pilot.mkdir(exist_ok=True)
    log, times = pilot / "pilot.log", pilot / "minutes.json"
    minutes = load_times(times)
    for name, (_, architecture, epochs, all_files) in RUNS.items():
        model = pilot / f"{name}.keras"
        if model.exists():
            continue
        files = every if all_files else [str(work / file) for file in BASE_FILES]
        seconds = run_logged([*CFSX, "train", *files, "-o", str(model), "--config", "train-general", "--set",
                              "model.cfs=4", "--arch", architecture, "--epochs", str(epochs), "--resume"],
                             log)  # fmt: skip
        minutes[name] = minutes.get(name, 0.0) + seconds / 60
        save_times(times, minutes)
    bench = pilot / "benchmark"
    started = time.perf_counter()
    command = [sys.executable, str(ROOT / "benchmarks" / "generalisation.py"), "--groups", *GROUPS,
               "--data", str(ROOT / "bench-output" / "generalisation-data"),
               "--corrupted-cases", "16", "--no-detector", "--refine-cases", "0", "--rule-cases", "0",
               "--work", str(bench), "--output", str(bench / "generalisation.md"), "--figures", str(bench)]  # fmt: skip
    for name in RUNS:
        command += ["--model", str(pilot / f"{name}.keras")]
    subprocess.run(command, check=True, cwd=ROOT / "benchmarks")
    scored = (time.perf_counter() - started) / 60
    replace_block(args.output, "models-pilot", table(pilot, bench / "results.json", minutes, scored))
    print(f"wrote the pilot block of {args.output}")
    return 0


def table(pilot: Path, results: Path, minutes: dict[str, float], scored: float) -> str:
    """The pilot's block: per model, its hold-out MAE and its alpha MAE on the benchmark's image sets."""
    from cfsx.learning.model_card import read_model_card

    rows = json.loads(results.read_text())["rows"]

    def mae(method: str, **match) -> str:
        value = mean_mae(rows, method=method, **match)
        return "-" if math.isnan(value) else f"{value:.4f}"

    def cells(method: str) -> list[str]:
        raw = [mae(method, group=group, image=image, treatment="raw") for group in GROUPS
               for image in ("clean", "all-origins")]  # fmt: skip
        return [*raw, mae(method, image="clean", treatment="corrected")]

    lines = []
    for name, (shows, *_) in RUNS.items():
        method = "CNN-CFS4" if name == next(iter(RUNS)) else f"CNN-CFS4 ({name})"  # generalisation.py's names
        card = read_model_card(pilot / f"{name}.keras")
        lines.append((name, shows, str(card.training.epochs_run), f"{card.hold_out.mae:.4f}", *cells(method)))
    lines.append(("least squares, no window", "-", "-", "-", *cells("LS-CFS4 no window")))
    header = ("model", "what it shows", "epochs run", "hold-out MAE (its own data)",
              *[f"{group} {image}" for group in GROUPS for image in ("clean", "all-origins")],
              "clean through correct (both groups)")  # fmt: skip
    trained = ", ".join(f"{name} {value:.1f}" for name, value in minutes.items())
    return (f"Measured by `python benchmarks/model_pilot.py` on {time.strftime('%Y-%m-%d')} (alpha MAE, CFS4; "
            f"minutes of training, on a machine shared with other jobs: {trained}; scoring {scored:.1f} "
            f"minutes):\n\n"
            + markdown_table(header, lines))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
