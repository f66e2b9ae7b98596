"""Where simulate's time goes, and what issue 13's loop and targets changed (make bench; a few minutes).

Every figure comes from this one run. "Old" is the seed study's loop and targets (uniform targets in
[-0.5, 0.5], gain 0.25, no early stop: benchmarks/harness.py SEED_STUDY_TARGETS on configs/cfs4.yaml);
"new" is configs/cfs4.yaml as shipped (realisable targets, stall stop, adaptive gains).

- Profile of one worker: each stage of simulate_sample timed for the first samples of a run, then the
  rest of the in-process `simulate` (batches, checkpoints, HDF5 with compression) as the difference.
- Sweep-equivalents per sample: one worker's time per sample divided by one 50 x 50 CFS4 sweep at
  couplings uniform in [-0.2, 0.2] (seed 0, as bench_engine.py), measured here.
- `cfsx simulate cfs4`, 5000 samples, 2 workers, old and new, from the command line.
- Label coverage of the two 5000-sample datasets, with a figure of histograms (per component and pairwise).
- Decoding realisable CFS4 encodings (alpha measured on lattices made at known couplings) with the old
  and the new loop: cycles and final misfit.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from harness import (
    SEED_STUDY_TARGETS,
    add_figures,
    add_output,
    best_of,
    machine_line,
    markdown_table,
    pyplot,
    replace_block,
    run_cfsx,
)

from cfsx.config import load_config
from cfsx.physics import engine
from cfsx.physics.encoding import cfs_vectors, vector_labels
from cfsx.simulation import run_feedback, simulate

# The engine's functions, by the stage they make up (simulate_sample calls nothing else that takes time).
STAGES = {
    "draw targets, seeds and lots": ("random_uniform", "seed_state", "random_origins"),
    "random lattice": ("random_lattice",),
    "fixed-coupling sweeps (couplings targets)": ("metropolis_sweeps",),
    "feedback: sweeps": ("feedback",),
    "alpha measurements": ("measure_alpha",),
    "diffraction (8 lots)": ("lot_intensity",),
}


def overrides(old: bool) -> list[str]:
    """--set values as config overrides (the pairs of SEED_STUDY_TARGETS without the flags)."""
    return SEED_STUDY_TARGETS[1::2] if old else []


def reference_sweep() -> float:
    """Seconds of one 50 x 50 CFS4 sweep at couplings uniform in [-0.2, 0.2] (seed 0), as bench_engine.py."""
    vectors = cfs_vectors(4)
    couplings = np.random.default_rng(0).uniform(-0.2, 0.2, len(vectors))
    lattice, state = engine.random_lattice(50, 0.5, engine.seed_state(1))
    return best_of(lambda: engine.metropolis_sweeps(lattice, vectors, couplings, 100, state)) / 100


def profile(name: str, samples: int, folder: Path) -> tuple[dict[str, float], float, float]:
    """One in-process simulate() on one worker under cProfile: seconds per sample of each stage (the rest:
    batches, checkpoints, HDF5, compression, Python), the total per sample, and the mean feedback cycles.

    The feedback's alpha measurements (one per cycle) are inside its Fortran call: they are split off with
    the time of one measurement, taken here."""
    import cProfile
    import pstats

    config = load_config("cfs4", [*overrides(name == "old"), f"run.samples={samples}"])
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(simulate, config, folder / f"{name}-profile.h5", workers=1)
    total = (time.perf_counter() - start) / samples
    stats = pstats.Stats(profiler).stats  # {(file, line, function): (calls, ..., tottime, cumtime, ...)}
    seconds = dict.fromkeys(STAGES, 0.0)
    for (filename, _, function), values in stats.items():
        if filename.endswith("cfsx/engine.py"):
            for stage, functions in STAGES.items():
                if function in functions:
                    seconds[stage] += values[3] / samples  # cumulative time of the call
    with h5py.File(folder / f"{name}-profile.h5") as file:
        cycles = float(file["cycles"][()].mean())
    lattice, _ = engine.random_lattice(config.lattice.size, config.lattice.concentration, engine.seed_state(0))
    per_alpha = best_of(lambda: engine.measure_alpha(lattice, cfs_vectors(4)), 20)
    seconds["feedback: sweeps"] -= cycles * per_alpha
    seconds["alpha measurements"] += cycles * per_alpha
    seconds["the rest (batches, checkpoints, HDF5, compression, Python)"] = total - sum(seconds.values())
    return seconds, total, cycles


def command_line(name: str, samples: int, workers: int, folder: Path) -> tuple[float, Path]:
    out = folder / f"{name}.h5"
    flags = SEED_STUDY_TARGETS if name == "old" else []
    seconds = run_cfsx("simulate", "cfs4", "-o", str(out), "--samples", str(samples), "--workers", str(workers),
                       *flags, cwd=folder)  # fmt: skip
    return seconds, out


def decoding(count: int) -> list[tuple[str, ...]]:
    """Feedback to realisable CFS4 encodings with the old and the new loop, from the same random lattices."""
    vectors = cfs_vectors(4)
    rng = np.random.default_rng(13)
    targets = []
    for index in range(count):  # alpha of lattices made at known couplings (40 sweeps, strength 0.02-0.5)
        couplings = np.exp(rng.uniform(np.log(0.02), np.log(0.5))) * rng.uniform(-1, 1, len(vectors))
        lattice, state = engine.random_lattice(50, 0.5, engine.seed_state(5000 + index))
        lattice, _, _ = engine.metropolis_sweeps(lattice, vectors, couplings, 40, state)
        targets.append(engine.measure_alpha(lattice, vectors))
    rows = []
    for name in ("old", "new"):
        config = load_config("cfs4", overrides(name == "old"))
        cycles, worst, mean = [], [], []
        for index, target in enumerate(targets):
            lattice, state = engine.random_lattice(50, 0.5, engine.seed_state(9000 + index))
            result = run_feedback(config, lattice, target, state)
            cycles.append(result.cycles)
            worst.append(np.abs(result.achieved - target).max())
            mean.append(np.abs(result.achieved - target).mean())
        rows.append((name, f"{np.mean(cycles):.1f}", f"{np.mean(worst):.3f}", f"{np.mean(mean):.4f}",
                     f"{100 * np.mean(np.array(worst) <= 1.5 / 50 + 1e-9):.0f} %"))  # fmt: skip
    return rows


def coverage_figure(old: np.ndarray, new: np.ndarray, labels: list[str], path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(3, 6, figsize=(16, 8))
    bins = np.linspace(-1, 1, 41)
    for index, axis in enumerate(axes.ravel()[: len(labels)]):
        axis.hist(old[:, index], bins, alpha=0.5, label="old (uniform targets)", density=True)
        axis.hist(new[:, index], bins, alpha=0.5, label="new (couplings)", density=True)
        axis.set_title(labels[index], fontsize=9)
        axis.set_yticks([])
    pairs = [(0, 2), (0, 3), (3, 12)]  # alpha(0,1)-alpha(0,3), alpha(0,1)-alpha(1,0), alpha(1,0)-alpha(3,1)
    for axis, (a, b) in zip(axes.ravel()[len(labels) :], pairs, strict=False):
        axis.scatter(old[:, a], old[:, b], s=1, alpha=0.3, label="old")
        axis.scatter(new[:, a], new[:, b], s=1, alpha=0.3, label="new")
        axis.set_xlabel(labels[a], fontsize=8)
        axis.set_ylabel(labels[b], fontsize=8)
        axis.set_xlim(-1, 1)
        axis.set_ylim(-1, 1)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle("CFS4 labels (achieved alpha), 5000 samples each: per component and three pairs")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output(parser, help_text="write the tables into this Markdown file")
    add_figures(parser, Path("docs/performance"))
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--profile-samples", type=int, default=200)
    parser.add_argument("--decode-targets", type=int, default=30)
    args = parser.parse_args()
    sweep = reference_sweep()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        profiles, per_sample, cycles = {}, {}, {}
        for name in ("old", "new"):
            profiles[name], per_sample[name], cycles[name] = profile(name, args.profile_samples, folder)
        wall, data = {}, {}
        for name in ("old", "new"):
            wall[name], data[name] = command_line(name, args.samples, 2, folder)
        labels = {}
        for name in ("old", "new"):
            with h5py.File(data[name]) as file:
                labels[name] = file["encodings/achieved"][()].astype(np.float64)
                stops = np.bincount(file["stop_reasons"][()], minlength=3)
            cycles[name + " stops"] = ", ".join(f"{n} {c}" for n, c in zip(engine.STOP_REASONS, stops, strict=True))
        decoded = decoding(args.decode_targets)
        args.figures.mkdir(parents=True, exist_ok=True)
        names = vector_labels(cfs_vectors(4))
        coverage_figure(labels["old"], labels["new"], names, args.figures / "labels-old-new.png")

    profile_rows = []
    for stage in profiles["old"]:
        profile_rows.append((stage, *(f"{1e3 * profiles[n][stage]:.2f} ms" for n in ("old", "new"))))
    profile_rows.append(("**per sample, one worker, in process (under the profiler)**",
                         *(f"**{1e3 * per_sample[n]:.2f} ms**" for n in ("old", "new"))))  # fmt: skip
    profile_rows.append(("sweep-equivalents per sample (goal <= 100)",
                         *(f"{per_sample[n] / sweep:.0f}" for n in ("old", "new"))))  # fmt: skip
    profile_rows.append(("mean feedback cycles", f"{cycles['old']:.1f}", f"{cycles['new']:.1f}"))
    speed = [(f"`cfsx simulate cfs4`, {args.samples} samples, 2 workers (whole command)",
              *(f"{wall[n]:.1f} s ({args.samples / wall[n]:.0f} samples/s)" for n in ("old", "new")),
              f"{wall['old'] / wall['new']:.1f}x")]  # fmt: skip
    speed.append(("stop reasons", cycles["old stops"], cycles["new stops"], ""))
    old, new = labels["old"], labels["new"]
    coverage = [
        ("per-component std (min-max over the 15)", f"{old.std(0).min():.3f}-{old.std(0).max():.3f}",
         f"{new.std(0).min():.3f}-{new.std(0).max():.3f}"),
        ("per-component minimum (range over the 15)", f"{old.min(0).min():.2f} to {old.min(0).max():.2f}",
         f"{new.min(0).min():.2f} to {new.min(0).max():.2f}"),
        ("per-component maximum (range over the 15)", f"{old.max(0).min():.2f} to {old.max(0).max():.2f}",
         f"{new.max(0).min():.2f} to {new.max(0).max():.2f}"),
        ("samples with some |alpha| > 0.6", f"{100 * np.mean(np.abs(old).max(1) > 0.6):.0f} %",
         f"{100 * np.mean(np.abs(new).max(1) > 0.6):.0f} %"),
        ("samples with every |alpha| < 0.1 (nearly random)", f"{100 * np.mean(np.abs(old).max(1) < 0.1):.1f} %",
         f"{100 * np.mean(np.abs(new).max(1) < 0.1):.1f} %"),
    ]  # fmt: skip
    text = "\n\n".join([
        machine_line("make bench") + f" One 50 x 50 CFS4 sweep (the unit of sweep-equivalents): {1e6 * sweep:.0f} us.",
        "Where one worker's time goes (one in-process run of " + str(args.profile_samples) + " samples under "
        "cProfile, each engine call's time to the stage it belongs to):\n\n"
        + markdown_table(("stage", "old: seed study", "new: configs/cfs4.yaml"), profile_rows),
        markdown_table(("run", "old", "new", "speed-up (goal >= 4x)"), speed),
        "Labels of the two datasets (goal: std no smaller, range no narrower):\n\n"
        + markdown_table(("labels (5000 samples each)", "old", "new"), coverage)
        + "\n\n![labels old and new](performance/labels-old-new.png)",
        f"Decoding {args.decode_targets} realisable CFS4 encodings (alpha of 50 x 50 lattices after 40 sweeps at "
        "known couplings) from random lattices (goal: new mean cycles <= 1/3 of old, misfit no worse):\n\n"
        + markdown_table(("loop", "mean cycles", "mean max misfit", "mean absolute misfit", "within 0.03 (1.5 / N)"),
                         decoded),  # fmt: skip
    ])  # fmt: skip
    print(text)
    if args.output:
        replace_block(args.output, "bench:simulate", text)


if __name__ == "__main__":
    main()
