"""Generalisation benchmark data: lattices, labels and images made WITHOUT cfsx's training route.

The yardstick the CNNs are judged on. Nothing here calls cfsx (not ``cfsx.physics.engine``, not
``cfsx.simulation``): the Monte Carlo is Numba, the labels and images are NumPy, all written from
DESIGN.md section 1 alone, so a shared mistake of the engine and its training data cannot hide.

Structures. Exchange (Kawasaki) Monte Carlo at FIXED pair couplings (no feedback loop):
E = sum_v J(v) sum_r sigma_r sigma_{r+v}, sigma = 2 s - 1, periodic N x N lattice, each pair once
(v over one of each pair v, -v), energies in kT. A move picks a uniformly random site of 1 and a
uniformly random site of 0 anywhere in the lattice and swaps them with the Metropolis rule (a
symmetric proposal, so detailed balance holds); one sweep = N*N attempts. The local fields
h_r = sum_v J(v) (sigma_{r+v} + sigma_{r-v}) are kept up to date, so an attempt costs O(1) and an
accepted swap O(|v|). The generator is splitmix64 inside the jitted kernel, seeded with one 64-bit
integer: a case is reproduced bit for bit from its seed.

Couplings per case: range R uniform in {1, 2, 3} (every v with max(|dx|, |dy|) <= R: 4, 12 or 24
vectors), J(v) = g_v / |v| with g_v ~ N(0, 1) (anisotropic, mixed signs), scaled so that the
mean-field (RPA) instability parameter kappa = -4 c (1 - c) min_q J(q), J(q) = 2 sum_v J(v)
cos 2 pi q.v, equals a strength drawn log-uniformly in [0.05, 3]. kappa = 1 is the mean-field
ordering point; the nearest-neighbour Ising model orders at kappa = 1.76, so about a quarter of the
cases are beyond the mean-field point and about one in eight beyond the Ising point (strong
order, domains). Concentration uniform in [0.2, 0.8] (the lattice holds round(c N^2) ones; the
stored c is the lattice's own mean).

Sweeps: 200 (SWEEPS), and 1600 (ORDERED_SWEEPS) for the cases of strength kappa > 1.5, for every
lattice size. Evidence (``--study-equilibration`` and longer runs of the same kind, chains of
3000-4000 sweeps, the plateau = the mean over the second half, snapshots every 100 sweeps): for
kappa <= 1.5 (about 83 % of the cases; 35 such chains at N = 64 and 128, 18 of them with kappa in
[1, 1.5]) the energy is within 2-3 standard deviations of its plateau, and the CFS4 alpha within
the snapshot-to-snapshot noise of the plateau (0.01-0.05), from 50-100 sweeps on: the non-local
swaps relax short-range order in tens of sweeps, so 200 is a 2-4 x margin. Beyond kappa = 1.5
(18 chains) the lattices order and coarsen: at N = 64 they settle by 200-800 sweeps, at N = 128 some
still drift at 800 sweeps (E up to 5 sd, alpha up to 0.09 from the plateau) and are within 4 sd and
0.05 at 1600;
full equilibrium (one domain) is out of reach of any affordable run. Every label is exact for its
lattice whatever its history; only how typical the lattice is of equilibrium depends on this.
The energy at every 10th sweep is stored (``energy_trace``) so each case's plateau can be checked.

Labels: alpha(v) = (<s_r s_{r+v}> - c^2) / (c (1 - c)) measured on the final periodic lattice by FFT
autocorrelation, for the CFS2, CFS3 and CFS4 vectors in DESIGN.md's order, and alpha over
|dx|, |dy| <= 8 (``alpha_wide[i, 8 + dx, 8 + dy]``) for oracles and least-squares studies.

Images (DESIGN.md "Diffraction"): h_m = -h_max + 2 h_max m / M, axis 0 is h (pairs with dx),
intensity per site. ``images_clean`` is the lot average of |F|^2 / L^2 over K lots of L x L at
random origins with periodic wrap, F = sum (s - c) exp(2 pi i (h x + k y)), c the lattice's mean;
for K = "all" it is the exact average over all N^2 origins of L x L lots (the group's L), which
equals the Warren-Cowley sum of the lattice's periodic correlations weighted by the Fejer window
(1 - |dx|/L)(1 - |dy|/L): the image of a crystal of many L x L coherent domains. Every group also
stores that all-origins image (``images_all_origins``), the lot-noise-free expectation of its
``images_clean``. Detector renders (512 x 512, h = k = 0 at pixel (280, 220), pixels_per_rlu drawn
per case in [80, 160], h = (row - 280) / ppr, k = (column - 220) / ppr) are the same all-origins
windowed Warren-Cowley sum on the pixels' h, k, for the first ``detector_cases`` cases of a group.

Corruptions, three levels each (1 = mildest), seeded per case, kind and level; the clean image
is kept beside each: poisson (100, 10, 1 counts per pixel at the mean clean level, rescaled back to
intensity), falloff exp(-B (h^2 + k^2)) with B = 0.1, 0.3, 1.0 r.l.u.^-2, bragg (Gaussian peaks at
every integer h, k with maximum 10, 100, 1000 x the mean clean level; on the 64 x 64 grid a third
are single pixels exactly at the integer h, k, the rest FWHM 0.5-3 px, peaks at h or k = -1 sit on
the image border and those at +1 just outside it; on the detector FWHM 1-2 px), gaps (zeros:
1 column of 2 px; 1 row and 1 column of 4 px; 2 rows and 2 columns of 6 px on the 64 grid, 7, 7 and
17 px wide on the detector), beamstop (-1 flags: a disk of radius 0.05, 0.1, 0.16 r.l.u. around
h = k = 0 and an arm 0.03, 0.06, 0.09 r.l.u. wide from it to the border at a random angle), and
combined (level i of each: ((clean + bragg) * falloff) -> poisson -> gaps -> beamstop). The masks of
gaps and beamstop are stored (``masks/...``) since zero counts are real values at low flux.

Seeds: case i of group g draws stream j from SeedSequence([seed, g, i, j]) (0 structure, 1 Monte
Carlo, 2 lot origins, 3 corruption (+ family, kind, level), 4 detector calibration), so every case
is reproduced alone, whatever the number of workers, cases or groups run.

Groups (GROUPS; N, L, K): n64-l32-k8 (the standard-like setting), n64-l32-kall, n128-l64-k8,
n128-l16-k64, n128-l32-k64, n64-l16-k8; 200 cases each by default (``--cases``), detector renders
for the first 16 (``--detector-cases``). The default run (all six groups, 2 workers) took 10.5
minutes on the shared 2-core development machine and writes about 180 MB per group.

Files: OUTPUT/GROUP.h5, written as GROUP.h5.tmp and renamed when complete; a rerun skips a group
whose file is complete and was made with the same settings (attrs). Datasets, first axis = case S:
lattices (S, N, N) uint8; couplings (S, 24) on coupling_vectors (24, 2) (zero beyond the case's
coupling_range), strength (kappa), coupling_range, concentration, sweeps, acceptance, mc_seed,
energy_trace (S, 161: every 10th sweep, NaN past the case's sweeps); alpha_cfs2/3/4 (S, D) with
vectors_cfs2/3/4; alpha_wide (S, 17, 17); lot_origins (S, K, 2) (finite K); images_clean and
images_all_origins (S, M, M) float32; images_corrupted/KIND/LEVEL (S, M, M) float32, KIND in
poisson falloff bragg gaps beamstop combined, LEVEL 1 2 3; masks/KIND/LEVEL (gaps, beamstop,
combined: uint8, 1 gap, 2 beamstop); bragg_fwhm_px and beamstop_angle (S, 3); detector_clean,
detector_corrupted/KIND/LEVEL (D, 512, 512) float32, detector_masks/..., detector_pixels_per_rlu,
detector_bragg_fwhm_px (D = detector cases, gzip). The attrs hold N, L, K ("all" or a number),
h_max, M, the calibration, the corruption levels (JSON), the seeds, sweeps and generator version.

Usage:
    python benchmarks/generalisation_data.py [--output bench-output/generalisation-data] [--cases 200]
        [--groups n64-l32-k8 ...] [--workers 2] [--detector-cases 16] [--seed 2026]
    python benchmarks/generalisation_data.py --study-equilibration

API (import with benchmarks/ on sys.path): GROUPS, group_by_name, make_group(spec, cases, seed,
options, workers) -> dict of stacked arrays + 'attrs', write_group(path, data), load_group(path,
detector=False) -> the same dict from a file, make_case(spec, case, seed, options), and the building
blocks exchange_monte_carlo, energy_per_site, instability, alpha_map, measure_alpha, alpha_window,
reciprocal_axis, lot_average_image, all_origins_image, warren_cowley_image, detector_axes,
render_detector (the simulator: generalisation_simulator.py), bragg_peaks, corrupt, corrupted_set (the
corruptions: generalisation_corruptions.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

# The simulator and the corruptions have modules of their own; every name of the API above is importable from here.
from generalisation_corruptions import (  # noqa: F401
    DETECTOR_CORRUPTION,
    KINDS,
    LEVELS,
    MASKED_KINDS,
    REDUCED_CORRUPTION,
    CorruptionSettings,
    beamstop_mask,
    bragg_peaks,
    corrupt,
    corrupted_set,
    draw_corruption,
    gap_mask,
)
from generalisation_simulator import (  # noqa: F401
    DETECTOR_ORIGIN,
    DETECTOR_SIZE,
    MAX_RANGE,
    TRACE_EVERY,
    WIDE_RADIUS,
    all_origins_image,
    alpha_map,
    alpha_window,
    autocorrelation,
    cfs_vectors,
    cosine_sum,
    coupling_vectors,
    detector_axes,
    energy_per_site,
    exchange_monte_carlo,
    fejer,
    instability,
    lot_average_image,
    measure_alpha,
    reciprocal_axis,
    render_detector,
    vectors_in_range,
    warren_cowley_image,
)

VERSION = "1"
DEFAULT_SEED = 2026
DEFAULT_CASES = 200
DEFAULT_DETECTOR_CASES = 16
SWEEPS = 200
ORDERED_SWEEPS = 1600
ORDERED_ABOVE = 1.5
STRENGTH_RANGE = (0.05, 3.0)
CONCENTRATION_RANGE = (0.2, 0.8)
PIXELS_PER_RLU_RANGE = (80, 160)
STREAM_STRUCTURE, STREAM_MONTE_CARLO, STREAM_LOTS, STREAM_CORRUPTION, STREAM_DETECTOR = range(5)


# --- groups -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSpec:
    """One imaging setting: N x N lattices, K lots of L x L (n_lots None = all N^2 origins)."""

    name: str
    index: int  # g in the case seeds: fixed per group, whichever groups a run makes
    size: int
    lot_size: int
    n_lots: int | None
    image_size: int = 64
    h_max: float = 1.0

    @property
    def lots_label(self) -> str:
        return "all" if self.n_lots is None else str(self.n_lots)


GROUPS = (
    GroupSpec("n64-l32-k8", 0, 64, 32, 8),  # the standard-like setting
    GroupSpec("n64-l32-kall", 1, 64, 32, None),
    GroupSpec("n128-l64-k8", 2, 128, 64, 8),
    GroupSpec("n128-l16-k64", 3, 128, 16, 64),
    GroupSpec("n128-l32-k64", 4, 128, 32, 64),
    GroupSpec("n64-l16-k8", 5, 64, 16, 8),
)


def group_by_name(name: str) -> GroupSpec:
    for spec in GROUPS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown group {name!r}; known: {', '.join(spec.name for spec in GROUPS)}")


def seed_sequence(seed: int, group: int, case: int, *stream: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, group, case, *stream])


# --- one case ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    sweeps: int = SWEEPS
    ordered_sweeps: int = ORDERED_SWEEPS  # for strength > ordered_above: the slow, coarsening cases
    ordered_above: float = ORDERED_ABOVE
    trace_every: int = TRACE_EVERY
    detector_cases: int = DEFAULT_DETECTOR_CASES
    detector_size: int = DETECTOR_SIZE
    detector_origin: tuple[int, int] = DETECTOR_ORIGIN
    strength_range: tuple[float, float] = STRENGTH_RANGE
    concentration_range: tuple[float, float] = CONCENTRATION_RANGE
    pixels_per_rlu_range: tuple[int, int] = PIXELS_PER_RLU_RANGE


def draw_structure(spec: GroupSpec, case: int, seed: int, options: Options) -> dict:
    """Couplings, concentration and the random starting lattice of one case (stream 0)."""
    rng = np.random.default_rng(seed_sequence(seed, spec.index, case, STREAM_STRUCTURE))
    vectors = coupling_vectors()
    max_range = int(rng.integers(1, MAX_RANGE + 1))
    concentration = float(rng.uniform(*options.concentration_range))
    strength = float(np.exp(rng.uniform(*np.log(options.strength_range))))
    raw = rng.normal(size=len(vectors)) / np.hypot(vectors[:, 0], vectors[:, 1])
    raw[vectors_in_range(max_range) :] = 0.0
    size = spec.size
    ones = round(concentration * size * size)
    flat = np.zeros(size * size, dtype=np.uint8)
    flat[rng.permutation(size * size)[:ones]] = 1
    lattice = flat.reshape(size, size)
    scale = instability(vectors, raw, ones / size**2)
    return {
        "coupling_range": max_range,
        "strength": strength,
        "couplings": raw * strength / scale,
        "start": lattice,
    }


def make_case(spec: GroupSpec, case: int, seed: int, options: Options = Options()) -> dict:  # noqa: B008
    """Everything of case ``case`` of a group: a dict of arrays (detector entries only below detector_cases)."""
    structure = draw_structure(spec, case, seed, options)
    used = vectors_in_range(structure["coupling_range"])
    sweeps = options.ordered_sweeps if structure["strength"] > options.ordered_above else options.sweeps
    mc_seed = int(seed_sequence(seed, spec.index, case, STREAM_MONTE_CARLO).generate_state(1, np.uint64)[0])
    lattice, trace, accepted = exchange_monte_carlo(
        structure["start"],
        coupling_vectors()[:used],
        structure["couplings"][:used],
        sweeps,
        mc_seed,
        options.trace_every,
    )
    longest = max(options.sweeps, options.ordered_sweeps) // options.trace_every + 1
    trace = np.concatenate([trace, np.full(longest - len(trace), np.nan)])
    size = spec.size
    out = {
        "lattices": lattice,
        "couplings": structure["couplings"],
        "coupling_range": structure["coupling_range"],
        "strength": structure["strength"],
        "concentration": float(lattice.mean()),
        "mc_seed": np.uint64(mc_seed),
        "energy_trace": trace,
        "sweeps": sweeps,
        "acceptance": accepted / max(sweeps * size * size, 1),
        "alpha_cfs2": measure_alpha(lattice, cfs_vectors(2)),
        "alpha_cfs3": measure_alpha(lattice, cfs_vectors(3)),
        "alpha_cfs4": measure_alpha(lattice, cfs_vectors(4)),
        "alpha_wide": alpha_window(lattice, WIDE_RADIUS),
    }
    axis = reciprocal_axis(spec.image_size, spec.h_max)
    everywhere = all_origins_image(lattice, spec.lot_size, axis, axis)
    out["images_all_origins"] = everywhere.astype(np.float32)
    if spec.n_lots is None:
        out["images_clean"] = out["images_all_origins"]
    else:
        lots = np.random.default_rng(seed_sequence(seed, spec.index, case, STREAM_LOTS))
        origins = lots.integers(0, size, size=(spec.n_lots, 2))
        out["lot_origins"] = origins.astype(np.int32)
        out["images_clean"] = lot_average_image(lattice, spec.lot_size, origins, axis, axis).astype(np.float32)

    def stream(family: int) -> Callable[[int, int], np.random.SeedSequence]:
        return lambda kind, level: seed_sequence(seed, spec.index, case, STREAM_CORRUPTION, family, kind, level)

    pixel = 2 * spec.h_max / spec.image_size
    clean = out["images_clean"].astype(np.float64)
    images, masks, drawn = corrupted_set(clean, axis, axis, pixel, REDUCED_CORRUPTION, stream(0))
    out.update({f"images_corrupted/{key}": value.astype(np.float32) for key, value in images.items()})
    out.update({f"masks/{key}": masks[key] for key in masks if key.split("/")[0] in MASKED_KINDS})
    out["bragg_fwhm_px"] = np.array([drawn[str(level)]["bragg"]["fwhm_px"] for level in LEVELS])
    out["beamstop_angle"] = np.array([drawn[str(level)]["beamstop"]["angle"] for level in LEVELS])
    if case < options.detector_cases:
        calibration = np.random.default_rng(seed_sequence(seed, spec.index, case, STREAM_DETECTOR))
        ppr = float(calibration.integers(options.pixels_per_rlu_range[0], options.pixels_per_rlu_range[1] + 1))
        h, k = detector_axes(ppr, options.detector_origin, options.detector_size)
        detector = all_origins_image(lattice, spec.lot_size, h, k)
        out["detector_pixels_per_rlu"] = ppr
        out["detector_clean"] = detector.astype(np.float32)
        images, masks, drawn = corrupted_set(detector, h, k, 1.0 / ppr, DETECTOR_CORRUPTION, stream(1))
        out.update({f"detector_corrupted/{key}": value.astype(np.float32) for key, value in images.items()})
        out.update({f"detector_masks/{key}": masks[key] for key in masks if key.split("/")[0] in MASKED_KINDS})
        out["detector_bragg_fwhm_px"] = np.array([drawn[str(level)]["bragg"]["fwhm_px"] for level in LEVELS])
    return out


# --- a group ------------------------------------------------------------------------------------


def _case_job(job: tuple) -> dict:
    spec, case, seed, options = job
    return make_case(spec, case, seed, options)


def _pool(workers: int) -> ProcessPoolExecutor | None:
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def group_attrs(spec: GroupSpec, cases: int, seed: int, options: Options) -> dict:
    return {
        "name": spec.name,
        "group_index": spec.index,
        "N": spec.size,
        "L": spec.lot_size,
        "K": spec.lots_label,
        "h_max": spec.h_max,
        "M": spec.image_size,
        "cases": cases,
        "seed": seed,
        "seeds": "case i of group g, stream j: numpy SeedSequence([seed, g, i, j]); "
        "j = 0 structure, 1 Monte Carlo (mc_seed), 2 lot origins, 3 corruption (+ family 0/1, kind, level), 4 detector",
        "generator": "benchmarks/generalisation_data.py",
        "generator_version": VERSION,
        "sweeps": options.sweeps,
        "ordered_sweeps": options.ordered_sweeps,
        "ordered_above": options.ordered_above,
        "trace_every": options.trace_every,
        "strength_range": list(options.strength_range),
        "concentration_range": list(options.concentration_range),
        "wide_radius": WIDE_RADIUS,
        "kinds": list(KINDS),
        "levels": list(LEVELS),
        "corruption_reduced": json.dumps(dataclasses.asdict(REDUCED_CORRUPTION)),
        "corruption_detector": json.dumps(dataclasses.asdict(DETECTOR_CORRUPTION)),
        "detector_cases": min(options.detector_cases, cases),
        "detector_size": options.detector_size,
        "detector_origin": list(options.detector_origin),
        "detector_pixels_per_rlu_range": list(options.pixels_per_rlu_range),
        "detector_calibration": "h = (row - origin[0]) / ppr, k = (column - origin[1]) / ppr, ppr per case",
        "images_clean": "all-origins (Fejer window of L)" if spec.n_lots is None else f"mean of {spec.n_lots} lots",
    }


def make_group(
    spec: GroupSpec,
    cases: int,
    seed: int = DEFAULT_SEED,
    options: Options = Options(),  # noqa: B008
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """All cases of a group stacked: dict of arrays (first axis = case) plus 'attrs' and the vector tables."""
    jobs = [(spec, case, seed, options) for case in range(cases)]
    pool = _pool(workers)
    results = []
    try:
        results_iter = pool.map(_case_job, jobs) if pool else map(_case_job, jobs)
        for result in results_iter:
            results.append(result)
            if progress:
                progress(len(results), cases)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    data: dict = {}
    for key in results[0]:
        if key.startswith("detector") or key == "lot_origins":
            rows = [result[key] for result in results if key in result]
        else:
            rows = [result[key] for result in results]
        data[key] = np.stack([np.asarray(row) for row in rows])
    data["coupling_vectors"] = coupling_vectors()
    for n in (2, 3, 4):
        data[f"vectors_cfs{n}"] = cfs_vectors(n)
    data["attrs"] = group_attrs(spec, cases, seed, options)
    return data


_COMPRESSED = ("detector_clean", "detector_corrupted/", "detector_masks/", "masks/", "lattices")


def write_group(path: Path, data: dict) -> None:
    """Write a group to ``path`` (via PATH.tmp, renamed when complete; attrs['complete'] = True)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with h5py.File(temporary, "w") as handle:
        for key, value in data.items():
            if key == "attrs":
                continue
            value = np.asarray(value)
            options = {}
            if key.startswith(_COMPRESSED) and value.ndim >= 2:
                options = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
                options["chunks"] = (1, *value.shape[1:])
            handle.create_dataset(key, data=value, **options)
        handle["alpha_wide"].attrs["index"] = f"[case, {WIDE_RADIUS} + dx, {WIDE_RADIUS} + dy]"
        handle["couplings"].attrs["vectors"] = "coupling_vectors (one of each pair v, -v; 0 beyond coupling_range)"
        for key, value in data["attrs"].items():
            handle.attrs[key] = value
        handle.attrs["complete"] = True
    temporary.replace(path)


def load_group(path: Path, detector: bool = False) -> dict:
    """A group file as a dict of arrays ('/'-joined keys, e.g. 'images_corrupted/poisson/3') plus 'attrs'.

    Detector datasets (hundreds of MB) are read only with ``detector=True``.
    """
    data: dict = {}
    with h5py.File(path, "r") as handle:

        def visit(name: str, item) -> None:
            if isinstance(item, h5py.Dataset) and (detector or not name.startswith("detector")):
                data[name] = item[()]

        handle.visititems(visit)
        data["attrs"] = {key: _attr(value) for key, value in handle.attrs.items()}
    return data


def _attr(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def group_complete(path: Path, attrs: dict) -> bool:
    """True when ``path`` holds a finished group made with exactly these settings."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as handle:
            stored = {key: _attr(value) for key, value in handle.attrs.items()}
    except OSError:
        return False
    return bool(stored.get("complete")) and all(stored.get(key) == value for key, value in attrs.items())


# --- summaries and the equilibration study ----------------------------------------------------------


def summarise(data: dict) -> str:
    """Alpha per CFS4 component (mean, std), strength and how many cases are strongly ordered."""
    alpha = data["alpha_cfs4"]
    wide = np.abs(data["alpha_wide"]).copy()
    centre = wide.shape[1] // 2
    wide[:, centre, centre] = 0.0
    strongest = wide.reshape(len(wide), -1).max(axis=1)
    lines = [
        f"  alpha_cfs4 mean {np.array2string(alpha.mean(axis=0), precision=3, max_line_width=200)}",
        f"  alpha_cfs4 std  {np.array2string(alpha.std(axis=0), precision=3, max_line_width=200)}",
        f"  max |alpha(v)|, |v| <= {centre}: median {np.median(strongest):.2f}; > 0.5 in {(strongest > 0.5).sum()}, "
        f"> 0.8 in {(strongest > 0.8).sum()} of {len(alpha)} cases; strength > 1 in {(data['strength'] > 1).sum()}",
    ]
    return "\n".join(lines)


def study_equilibration(sizes=(64, 128), cases: int = 12, sweeps: int = 4000, seed: int = DEFAULT_SEED) -> list[dict]:
    """Long chains of the first cases of a group per size: how far E and alpha are from their late plateau.

    The plateau is the mean over sweeps sweeps/2..sweeps (snapshots every 100 sweeps); the drift at t is
    (E(t) - E_late) / sd(E_late) and max over the CFS4 components of |alpha(t) - alpha_late| (absolute).
    """
    checkpoints = (25, 50, 100, 200, 400, 800)
    vectors_cfs4 = cfs_vectors(4)
    rows = []
    for size in sizes:
        spec = next(spec for spec in GROUPS if spec.size == size)
        print(f"N = {size}: E drift in sd of the plateau / max |alpha(t) - alpha_late| over CFS4 at sweeps t")
        print("  case kappa R " + " ".join(f"{t:>12d}" for t in checkpoints) + "   sd(alpha) seconds")
        for case in range(cases):
            structure = draw_structure(spec, case, seed, Options())
            used = vectors_in_range(structure["coupling_range"])
            vectors, couplings = coupling_vectors()[:used], structure["couplings"][:used]
            started = time.perf_counter()
            lattice, done, snapshots = structure["start"], 0, {}
            for stop in sorted(set(checkpoints) | set(range(sweeps // 2, sweeps + 1, 100))):
                lattice, _, _ = exchange_monte_carlo(lattice, vectors, couplings, stop - done, 1000 * case + stop)
                done = stop
                snapshots[stop] = (energy_per_site(lattice, vectors, couplings), measure_alpha(lattice, vectors_cfs4))
            seconds = time.perf_counter() - started
            late = [snapshots[t] for t in snapshots if t >= sweeps // 2]
            energies = np.array([energy for energy, _ in late])
            alphas = np.array([alpha for _, alpha in late])
            e_late, e_sd = energies.mean(), max(energies.std(), 1e-12)
            a_late, a_sd = alphas.mean(axis=0), alphas.std(axis=0).max()
            drift_e = [(snapshots[t][0] - e_late) / e_sd for t in checkpoints]
            drift_a = [np.abs(snapshots[t][1] - a_late).max() for t in checkpoints]
            rows.append({"size": size, "case": case, "kappa": structure["strength"], "drift_e": drift_e,
                         "drift_alpha": drift_a, "sd_alpha": a_sd})  # fmt: skip
            cells = " ".join(f"{e:6.1f}/{a:5.3f}" for e, a in zip(drift_e, drift_a, strict=True))
            kappa, reach = structure["strength"], structure["coupling_range"]
            print(f"  {case:4d} {kappa:5.2f} {reach} {cells}   {a_sd:9.3f} {seconds:7.1f}")
    return rows


# --- command line -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("bench-output/generalisation-data"))
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, help="cases per group")
    parser.add_argument("--groups", nargs="+", default=[spec.name for spec in GROUPS], metavar="GROUP")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--detector-cases", type=int, default=DEFAULT_DETECTOR_CASES)
    parser.add_argument("--sweeps", type=int, default=SWEEPS)
    parser.add_argument("--ordered-sweeps", type=int, default=ORDERED_SWEEPS, help=f"for strength > {ORDERED_ABOVE}")
    parser.add_argument("--study-equilibration", action="store_true", help="long chains: E(t) against its plateau")
    args = parser.parse_args(argv)
    if args.study_equilibration:
        study_equilibration(seed=args.seed)
        return 0
    try:
        specs = [group_by_name(name) for name in args.groups]
    except KeyError as error:
        print(error.args[0], file=sys.stderr)
        return 2
    options = Options(sweeps=args.sweeps, ordered_sweeps=args.ordered_sweeps, detector_cases=args.detector_cases)
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for spec in specs:
        path = args.output / f"{spec.name}.h5"
        attrs = group_attrs(spec, args.cases, args.seed, options)
        if group_complete(path, attrs):
            print(f"{spec.name}: complete in {path}, skipped")
            continue
        group_started = time.perf_counter()
        step = max(1, args.cases // 10)

        def progress(done: int, total: int, name: str = spec.name, since: float = group_started) -> None:
            if done % step == 0 or done == total:
                print(f"{name}: {done}/{total} cases, {time.perf_counter() - since:.0f} s", flush=True)

        data = make_group(spec, args.cases, args.seed, options, args.workers, progress)
        write_group(path, data)
        megabytes, seconds = path.stat().st_size / 1e6, time.perf_counter() - group_started
        print(f"{spec.name}: wrote {path} ({megabytes:.0f} MB) in {seconds:.0f} s")
        print(summarise(data), flush=True)
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
