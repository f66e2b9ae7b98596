"""Old targets against new: does a CNN trained on realisable targets do as well where the old one was trained?

Trains the small CNN (configs/train.yaml) on 5000 CFS4 samples of each kind: "old" (the seed study's
uniform targets and loop: benchmarks/harness.py SEED_STUDY_TARGETS) and "new" (configs/cfs4.yaml as
shipped), then scores both models on 1000 fresh samples of each kind (another seed) and on the clean
images of the generalisation benchmark (benchmarks/generalisation_data.py, when its data are there).
Writes the marked block of docs/performance.md. `make targets-study`: about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import h5py
import numpy as np
from harness import SEED_STUDY_TARGETS, add_output, echo_cfsx, machine_line, markdown_table, replace_block

KINDS = ("old", "new")


def ensure(work: Path, kind: str, samples: int, seed: int) -> Path:
    path = work / f"{kind}-{samples}-seed{seed}.h5"
    if not path.exists():
        flags = SEED_STUDY_TARGETS if kind == "old" else []
        echo_cfsx("simulate", "cfs4", "-o", str(path), "--samples", str(samples), "--set", f"run.seed={seed}", *flags)
    return path


def scores(model, path: Path) -> tuple[float, float]:
    from cfsx.learning.models import predict
    from cfsx.physics.metrics import r2_per_component

    with h5py.File(path) as file:
        images, truth = file["images"][()], file["encodings/achieved"][()].astype(np.float64)
    predicted = predict(model, images, 256)
    return float(np.abs(predicted - truth).mean()), float(r2_per_component(truth, predicted).mean())


def generalisation_scores(model, folder: Path) -> float | None:
    """CNN alpha MAE on the benchmark's clean images, mean of its groups (None without its data)."""
    import generalisation_data as gd

    from cfsx.learning.models import predict

    values = []
    for spec in gd.GROUPS:
        path = folder / f"{spec.name}.h5"
        if not path.exists():
            return None
        data = gd.load_group(path, detector=False)
        predicted = predict(model, data["images_clean"].astype(np.float32), 256)
        values.append(float(np.abs(predicted - data["alpha_cfs4"]).mean()))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-output/targets-study"))
    add_output(parser, Path("docs/performance.md"), help_text=None)
    parser.add_argument("--generalisation-data", type=Path, default=Path("bench-output/generalisation-data"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    train_data = {kind: ensure(args.work, kind, 5000, 0) for kind in KINDS}
    test_data = {kind: ensure(args.work, kind, 1000, 7) for kind in KINDS}
    models = {}
    for kind in KINDS:
        path = args.work / f"{kind}.keras"
        if not path.exists():
            echo_cfsx("train", str(train_data[kind]), "-o", str(path))
        models[kind] = path
    from cfsx.learning.models import load_model

    rows = []
    for kind in KINDS:
        model, _ = load_model(models[kind])
        cells = []
        for data in KINDS:
            mae, r2 = scores(model, test_data[data])
            cells.append(f"{mae:.4f} ({r2:.3f})")
        general = generalisation_scores(model, args.generalisation_data)
        rows.append((f"trained on {kind}", *cells, "-" if general is None else f"{general:.4f}"))
    minutes = (time.perf_counter() - began) / 60
    table = markdown_table(("model", "old test data: MAE (R2)", "new test data: MAE (R2)",
                            "generalisation benchmark, clean: MAE (mean of groups)"), rows)  # fmt: skip
    work = os.path.relpath(args.work)
    text = (f"{machine_line('make targets-study')} {minutes:.1f} minutes (data and models are kept in `{work}` "
            f"and reused). Small CNN, configs/train.yaml; test data: 1000 fresh samples of each kind (seed 7)."
            f"\n\n{table}")  # fmt: skip
    print(text)
    replace_block(args.output, "targets-study", text)


if __name__ == "__main__":
    main()
