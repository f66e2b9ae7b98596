"""Engine benchmark: Monte Carlo moves, diffraction patterns and simulate throughput.

Every figure comes from this one run, and the compiled kernels are compared with the NumPy
reference measured in the same run. Run with OPENBLAS_NUM_THREADS=1 (make bench does) so
the reference's matrix products use one core, as each simulate worker does.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from harness import add_output, best_of, machine_line, markdown_table, replace_block, run_cfsx

from cfsx.physics import _reference as reference
from cfsx.physics import engine
from cfsx.physics.encoding import cfs_vectors


def bench_monte_carlo(rows):
    for size in (50, 96):
        for cfs in (2, 4):
            vectors = cfs_vectors(cfs)
            couplings = np.random.default_rng(0).uniform(-0.2, 0.2, len(vectors))
            lattice, state = engine.random_lattice(size, 0.5, engine.seed_state(1))
            sweeps = 100
            seconds = best_of(lambda: engine.metropolis_sweeps(lattice, vectors, couplings, sweeps, state))
            attempts = sweeps * size * size
            ref_sweeps = 1
            ref_seconds = best_of(
                lambda: reference.metropolis_sweeps(lattice, vectors, couplings, ref_sweeps, reference.Xoshiro128(1)),
                repeats=1,
            )
            ref_ns = ref_seconds / (ref_sweeps * size * size) * 1e9
            ns = seconds / attempts * 1e9
            rows.append(
                (
                    f"MC swaps, CFS{cfs}, {size}x{size}",
                    f"{attempts / seconds / 1e6:.1f} M attempts/s ({ns:.1f} ns/attempt)",
                    f"{ref_ns:.0f} ns/attempt",
                    f"{ref_ns / ns:.0f}x",
                )
            )


def bench_diffraction(rows):
    for label, size, lot, lots in (("standard", 50, 25, 8), ("hi-res", 96, 48, 64)):
        lattice, state = engine.random_lattice(size, 0.5, engine.seed_state(2))
        origins, _ = engine.random_origins(size, lots, state)
        repeats = 200 if lots == 8 else 20
        seconds = best_of(lambda: [engine.lot_intensity(lattice, lot, origins) for _ in range(repeats)]) / repeats
        ref_seconds = (
            best_of(lambda: [reference.lot_intensity(lattice, lot, origins) for _ in range(repeats)]) / repeats
        )
        rows.append(
            (
                f"diffraction, {label} ({lots} lots of {lot}x{lot}, 64x64)",
                f"{1 / seconds:.0f} patterns/s ({seconds * 1e3:.3f} ms)",
                f"{1 / ref_seconds:.0f} patterns/s ({ref_seconds * 1e3:.3f} ms)",
                f"{ref_seconds / seconds:.1f}x",
            )
        )
        all_seconds = best_of(lambda: [engine.all_lots_intensity(lattice, lot) for _ in range(repeats)]) / repeats
        rows.append(
            (
                f"diffraction, {label}, n_lots: all (exact average over {size * size} origins)",
                f"{1 / all_seconds:.0f} patterns/s ({all_seconds * 1e3:.3f} ms)",
                "",
                "",
            )
        )


def bench_simulate(rows, samples):
    with tempfile.TemporaryDirectory() as folder:
        for workers in (1, 2):
            out = Path(folder) / f"w{workers}.h5"
            seconds = run_cfsx("simulate", "cfs4", "-o", str(out), "--samples", str(samples), "--workers", str(workers),
                               cwd=Path(folder))  # fmt: skip
            rows.append(
                (
                    f"cfsx simulate cfs4, {samples} samples, {workers} worker(s)",
                    f"{samples / seconds:.1f} samples/s ({seconds:.1f} s wall, whole command)",
                    "",
                    "",
                )
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    add_output(parser, help_text="write the table as Markdown here")
    parser.add_argument("--samples", type=int, default=5000, help="samples for the simulate benchmark")
    args = parser.parse_args()
    rows = []
    bench_monte_carlo(rows)
    bench_diffraction(rows)
    bench_simulate(rows, args.samples)
    table = markdown_table(("what", "cfsx (Fortran)", "NumPy reference", "ratio"), rows)
    print(table)
    if args.output:
        replace_block(
            args.output,
            "bench:engine",
            machine_line("make bench") + " The NumPy reference (cfsx/_reference.py) runs the same algorithm in "
            "plain NumPy/Python (its Monte Carlo is timed on one sweep; its diffraction is the complex "
            "matrix-product transform on the full grid).\n\n" + table,
        )


if __name__ == "__main__":
    main()
