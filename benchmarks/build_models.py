"""make models: build one built-in general model from scratch with cfsx's own commands.

For ``--cfs N``: simulate every setting of configs/general-*.yaml (``cfsx simulate --resume``),
make its corrupted-and-corrected copy (``cfsx corrupt``), train ``general-cfsN`` on all of them
(``cfsx train --config train-general --set model.cfs=N --resume``), score it on the
generalisation benchmark (benchmarks/generalisation.py) and install it into cfsx/learning/builtin/ with its
entry in cfsx/learning/builtin/models.json (sha256, recipe, benchmark figures).

Every step is skipped when its output is complete, and a killed run continues where it stopped
(the simulations and the training resume from their checkpoints), so the whole job may span several
runs. The recipe is a hash of every config that shapes the model (the settings, the corruptions,
the correction, the training); a model installed from the same recipe is not built again. Same
recipe, same seeds: the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness import CFSX, ROOT, load_times, markdown_table, mean_mae, replace_block, run_logged, save_times

BUILTIN_DIR = ROOT / "cfsx" / "learning" / "builtin"
CORRUPTION_SEED = 15
TRAINING_CONFIG = "train-general"


def settings() -> list[str]:
    return sorted(path.stem.removeprefix("general-") for path in (ROOT / "configs").glob("general-*.yaml"))


def recipe(cfs: int) -> str:
    """sha256 of everything that shapes the model: the resolved configs and the corruption settings."""
    from cfsx.config import CorrectionConfig, TrainingConfig, load_config
    from cfsx.learning import corruption

    parts = [load_config(f"general-{name}").to_yaml() for name in settings()]
    parts.append(
        json.dumps({"seed": CORRUPTION_SEED, "probability": corruption.PROBABILITY, "ranges": corruption.RANGES})
    )
    parts.append(load_config("correct", root=CorrectionConfig).to_yaml())
    parts.append(load_config(TRAINING_CONFIG, [f"model.cfs={cfs}"], root=TrainingConfig).to_yaml())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cfsx(*arguments: str, log: Path) -> float:
    """Run a cfsx command (this interpreter's), its output appended to ``log``; return its wall time."""
    return run_logged([*CFSX, *arguments], log)


def benchmark_figures(results: Path, cfs: int) -> dict[str, float]:
    """The model's headline figures from benchmarks/generalisation.py's results.json (means over the groups)."""
    rows = [row for row in json.loads(results.read_text())["rows"] if row["method"] == f"CNN-CFS{cfs}"]
    return {
        "clean MAE": mean_mae(rows, image="clean", treatment="raw"),
        "all-origins MAE": mean_mae(rows, image="all-origins", treatment="raw"),
        "corrected, level 2 MAE": mean_mae(rows, image="corrupted", treatment="corrected", level=2),
    }


def main() -> int:
    from cfsx.learning.builtin import BuiltinModel, builtin_model, file_sha256, register
    from cfsx.learning.builtin_check import check_mae

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfs", type=int, required=True, choices=(2, 3, 4))
    parser.add_argument("--work", type=Path, default=ROOT / "model-work", help="data, runs and logs")
    parser.add_argument("--no-benchmark", dest="benchmark", action="store_false", help="install without scoring")
    parser.add_argument(
        "--benchmark-only",
        action="store_true",
        help="score the installed model again (after a change of the final rule) and rewrite its block",
    )
    args = parser.parse_args()
    name = f"general-cfs{args.cfs}"
    wanted = recipe(args.cfs)
    installed = builtin_model(name, BUILTIN_DIR)
    if args.benchmark_only:
        return rescore(installed, args.work.resolve())
    if installed is not None and installed.recipe == wanted and (BUILTIN_DIR / installed.file).is_file():
        print(f"{name} is up to date (recipe {wanted[:12]}): nothing to do")
        return 0
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    times_path = work / "times.json"
    times = load_times(times_path)

    data, copies = [], []
    for setting in settings():
        clean, copy = work / f"general-{setting}.h5", work / f"general-{setting}-corrupted.h5"
        if not clean.exists():
            times[f"simulate {setting}"] = cfsx("simulate", f"general-{setting}", "-o", str(clean), "--resume", log=log)
        if not copy.exists():
            times[f"corrupt {setting}"] = cfsx("corrupt", str(clean), "-o", str(copy), "--seed", str(CORRUPTION_SEED),
                                               log=log)  # fmt: skip
        save_times(times_path, times)
        data.append(str(clean))
        copies.append(str(copy))

    model, stamp = work / f"{name}.keras", work / f"{name}.recipe"
    if (
        model.exists()
        and (not stamp.exists() or stamp.read_text() != wanted)
        and not model.with_name(model.name + ".parts").exists()
    ):
        model.unlink()  # made from another recipe
    if not model.exists() or model.with_name(model.name + ".parts").exists():
        stamp.write_text(wanted)
        times[f"train {name}"] = times.get(f"train {name}", 0.0) + cfsx(
            "train", *data, *copies, "-o", str(model), "--config", TRAINING_CONFIG, "--set", f"model.cfs={args.cfs}",
            "--resume", log=log,
        )  # fmt: skip
        save_times(times_path, times)

    figures: dict[str, float] = {}
    if args.benchmark:
        bench = work / f"benchmark-{name}"
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generalisation.py"), "--model", str(model),
                        "--work", str(bench), "--output", str(bench / "generalisation.md"), "--figures", str(bench),
                        "--refine-cases", "0", "--rule-cases", "0"], check=True, cwd=ROOT)  # fmt: skip
        times[f"benchmark {name}"] = time.perf_counter() - started
        figures = benchmark_figures(bench / "results.json", args.cfs)

    BUILTIN_DIR.mkdir(exist_ok=True)  # the source tree's: meson installs it with the package
    target = BUILTIN_DIR / f"{name}.keras"
    shutil.copyfile(model, target)
    register(BuiltinModel(
        name=name, file=target.name, sha256=file_sha256(target), cfs=args.cfs,
        architecture=_architecture(model), recipe=wanted,
        trained_on=f"{len(data)} settings of configs/general-*.yaml with their corrupted-and-corrected copies",
        benchmark=figures, check_mae=check_mae(target),
    ), BUILTIN_DIR)  # fmt: skip
    save_times(times_path, times)

    # One block per model: a build replaces its own model's figures and times and keeps the others'.
    docs = ROOT / "docs" / "models.md"
    if args.benchmark:
        replace_block(docs, f"models-benchmark-{name}", card_table(work, builtin_model(name, BUILTIN_DIR)))
    others = [f"general-cfs{cfs}" for cfs in (2, 3, 4) if cfs != args.cfs]
    steps = {key: value for key, value in times.items() if not any(other in key for other in others)}
    replace_block(
        docs,
        f"models-times-{name}",
        f"Run times of the `make models-cfs{args.cfs}` steps (2-core development machine, shared; the data steps "
        "are those of the run that made model-work/):\n\n"
        + "\n".join(f"- {key}: {value / 60:.1f} minutes" for key, value in steps.items()),
    )
    print(f"installed {target} ({target.stat().st_size / 1e6:.1f} MB) and its entry in {BUILTIN_DIR / 'models.json'}")
    return 0


def rescore(model, work: Path) -> int:
    """The generalisation benchmark of an installed built-in model, and its block of docs/models.md."""
    bench = work / f"benchmark-{model.name}"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generalisation.py"), "--model", str(model.path),
                    "--work", str(bench), "--output", str(bench / "generalisation.md"), "--figures", str(bench),
                    "--refine-cases", "0", "--rule-cases", "0"], check=True, cwd=ROOT)  # fmt: skip
    replace_block(ROOT / "docs" / "models.md", f"models-benchmark-{model.name}", card_table(work, model))
    return 0


def card_table(work: Path, model) -> str:
    """docs/models.md's benchmark block of one installed model: its generalisation figures against the goals."""
    import generalisation_data as gd

    results = work / f"benchmark-{model.name}" / "results.json"
    document = json.loads(results.read_text())
    rows = document["rows"]
    names = (f"CNN-CFS{model.cfs}", f"LS-CFS{model.cfs} no window", f"final-CFS{model.cfs}")

    def mae(name: str, **match) -> float:
        return mean_mae(rows, method=name, **match)

    clean = {name: mae(name, image="clean", treatment="raw") for name in names}
    table = []

    def add(label: str, values: list[float], goal: str) -> None:
        table.append((label, *(f"{value:.4f}" for value in values), goal))

    add(
        "clean",
        list(clean.values()),
        f"CNN <= 1.1 x least squares: {clean[names[0]] / clean[names[1]]:.3f} x "
        f"({'met' if clean[names[0]] <= 1.1 * clean[names[1]] else 'missed'}); "
        f"final <= least squares: {'met' if clean[names[2]] <= clean[names[1]] + 1e-9 else 'missed'}",
    )
    exact = [mae(name, image="all-origins", treatment="raw") for name in names]
    add("exact expected (all origins)", exact, f"CNN <= 0.006: {'met' if exact[0] <= 0.006 else 'missed'}")
    add("clean, through correct", [mae(name, image="clean", treatment="corrected") for name in names], "-")
    for kind in gd.KINDS:
        values = [mae(name, image="corrupted", kind=kind, level=2, treatment="corrected") for name in names]
        ratio = values[2] / clean[names[2]]
        add(f"{kind}, level 2, through correct", values,
            f"final <= 1.5 x final clean: {ratio:.2f} x ({'met' if ratio <= 1.5 else 'missed'})")  # fmt: skip
    header = ("images (alpha MAE, mean of the six groups)", f"CNN ({model.name})", "least squares, no window",
              "final answer", "goal")  # fmt: skip
    return (f"**{model.name}** (sha256 `{model.sha256[:16]}...`; `{document['command']}`, "
            f"{document['seconds'] / 60:.1f} minutes):\n\n{markdown_table(header, table)}")  # fmt: skip


def _architecture(model: Path) -> str:
    from cfsx.learning.model_card import read_model_card

    return read_model_card(model).architecture


if __name__ == "__main__":
    sys.exit(main())
