"""Slow, obvious NumPy/Python versions of every engine kernel.

The tests compare the compiled kernels against these; the benchmarks measure them as
the baseline. The random generator and the Monte Carlo follow the same algorithm as the
Fortran, so with the same seed they give the same lattice (exactly, when the couplings
are dyadic numbers and every energy sum is exact in floating point).
"""

from __future__ import annotations

import math

import numpy as np

_MASK32 = 0xFFFFFFFF


def _rotl32(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK32


def _mix32(x: int) -> int:
    h = x & _MASK32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


class Xoshiro128:
    """xoshiro128** with the engine's seeding (fortran/random.f90)."""

    def __init__(self, seed: int) -> None:
        seed &= (1 << 64) - 1
        low, high = seed & _MASK32, seed >> 32
        counter = low
        self.state = []
        for i in range(1, 5):
            counter = (counter + 0x9E3779B9) & _MASK32
            self.state.append(_mix32(counter ^ _mix32(high ^ i)))
        if not any(self.state):
            self.state[0] = 1

    def next(self) -> int:
        s = self.state
        value = (_rotl32((s[1] * 5) & _MASK32, 7) * 9) & _MASK32
        t = (s[1] << 9) & _MASK32
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl32(s[3], 11)
        return value

    def uniform(self) -> float:
        return self.next() * 2.0**-32

    def below(self, n: int) -> int:
        return (self.next() * n) >> 32


def random_lattice(size: int, concentration: float, rng: Xoshiro128) -> np.ndarray:
    """Partial Fisher-Yates over site numbers r = x + N y, as the engine does."""
    n_sites = size * size
    sites = list(range(n_sites))
    lattice = np.zeros((size, size), dtype=np.uint8)
    for i in range(int(round(concentration * n_sites))):
        j = i + rng.below(n_sites - i)
        sites[i], sites[j] = sites[j], sites[i]
        lattice[sites[i] % size, sites[i] // size] = 1
    return lattice


def _site_field(spins: np.ndarray, x: int, y: int, vectors: np.ndarray, couplings: np.ndarray) -> float:
    n = spins.shape[0]
    total = 0.0
    for (dx, dy), coupling in zip(vectors, couplings, strict=True):
        total += coupling * (spins[(x + dx) % n, (y + dy) % n] + spins[(x - dx) % n, (y - dy) % n])
    return total


def metropolis_sweeps(
    lattice: np.ndarray, vectors: np.ndarray, couplings: np.ndarray, n_sweeps: int, rng: Xoshiro128
) -> tuple[np.ndarray, int]:
    """Swap Monte Carlo with the energy change computed from scratch at every attempt."""
    lattice = np.array(lattice, dtype=np.uint8)
    n = lattice.shape[0]
    spins = 2 * lattice.astype(np.int64) - 1
    occupied = [x + n * y for y in range(n) for x in range(n) if lattice[x, y] == 1]
    empty = [x + n * y for y in range(n) for x in range(n) if lattice[x, y] == 0]
    accepted = 0
    for _ in range(n_sweeps * n * n):
        i = rng.below(len(occupied))
        j = rng.below(len(empty))
        r, q = occupied[i], empty[j]
        xr, yr, xq, yq = r % n, r // n, q % n, q // n
        energy_before = spins[xr, yr] * _site_field(spins, xr, yr, vectors, couplings) + spins[xq, yq] * _site_field(
            spins, xq, yq, vectors, couplings
        )
        spins[xr, yr], spins[xq, yq] = -1, 1
        energy_after = spins[xr, yr] * _site_field(spins, xr, yr, vectors, couplings) + spins[xq, yq] * _site_field(
            spins, xq, yq, vectors, couplings
        )
        # The sum over the two sites counts an r-q bond twice on both sides: it cancels.
        delta_energy = energy_after - energy_before
        if delta_energy > 0.0 and rng.uniform() >= math.exp(-delta_energy):
            spins[xr, yr], spins[xq, yq] = 1, -1
            continue
        occupied[i], empty[j] = q, r
        accepted += 1
    return ((spins + 1) // 2).astype(np.uint8), accepted


def measure_alpha(lattice: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """alpha(v) from the definition, with np.roll for the periodic shift."""
    s = np.asarray(lattice, dtype=np.float64)
    c = s.mean()
    return np.array([((s * np.roll(s, (-dx, -dy), axis=(0, 1))).mean() - c * c) / (c * (1 - c)) for dx, dy in vectors])


GAIN_UP, GAIN_DOWN, GAIN_MIN = 1.2, 0.7, 0.02  # the adaptive gains' factors and floor


def feedback(lattice, vectors, target, rng, settings, couplings=None):
    """Welberry's feedback loop, step for step as the engine runs it, with its stagnation stop (which returns
    the best lattice seen) and its adaptive per-component gains; ``settings`` as engine.FeedbackSettings.

    Returns (lattice, alpha, couplings, cycles, reason), reason 0 reached, 1 stalled, 2 max_cycles.
    """
    gain, sweeps_per_cycle, tolerance = settings.gain, settings.sweeps_per_cycle, settings.tolerance
    max_cycles, coupling_bound, adaptive = settings.max_cycles, settings.coupling_bound, settings.adaptive
    stall_cycles, stall_noise = settings.stall_cycles, settings.stall_noise
    couplings = np.clip(
        np.zeros(len(vectors)) if couplings is None else np.array(couplings, float),
        -coupling_bound,
        coupling_bound,
    )
    target = np.asarray(target, dtype=np.float64)
    best, since_best, seen = np.inf, 0, None
    gains, previous = np.full(len(vectors), float(gain)), np.zeros(len(vectors))

    def best_or(last, reason):
        return (*seen[1:], cycle, reason) if stall_cycles > 0 and seen[0] < last[0] else (*last[1:], cycle, reason)

    for cycle in range(1, max_cycles + 1):
        lattice, _ = metropolis_sweeps(lattice, vectors, couplings, sweeps_per_cycle, rng)
        alpha = measure_alpha(lattice, vectors)
        error = alpha - target
        misfit = np.max(np.abs(error))
        if misfit <= tolerance:
            return lattice, alpha, couplings, cycle, 0
        last = (misfit, lattice.copy(), alpha, couplings.copy())
        if stall_cycles > 0 and (seen is None or misfit < seen[0]):
            seen = last
        if cycle == max_cycles:
            return best_or(last, 2)
        if stall_cycles > 0:
            if misfit < best - stall_noise:
                best, since_best = misfit, 0
            else:
                since_best += 1
            pinned = (np.abs(couplings) >= coupling_bound) & (couplings * error > 0)
            if since_best >= stall_cycles or np.all(pinned | (np.abs(error) <= tolerance)):
                return best_or(last, 1)
        if adaptive and cycle > 1:
            gains = np.where(error * previous > 0, np.minimum(gains * GAIN_UP, coupling_bound), gains)
            gains = np.where(error * previous < 0, np.maximum(gains * GAIN_DOWN, GAIN_MIN), gains)
        previous = error
        couplings = np.clip(couplings + gains * error, -coupling_bound, coupling_bound)
    raise AssertionError("unreachable")


def reciprocal_grid(image_size: int, h_max: float) -> np.ndarray:
    """h_m = -h_max + 2 h_max m / M, m = 0..M-1 (DESIGN.md)."""
    return -h_max + 2.0 * h_max * np.arange(image_size) / image_size


def lot_intensity(lattice, lot_size, origins, image_size=64, h_max=1.0) -> np.ndarray:
    """The NumPy matrix-product transform F = E A E^T per lot, on the full complex grid."""
    s = np.asarray(lattice, dtype=np.float64)
    n = s.shape[0]
    c = s.mean()
    grid = reciprocal_grid(image_size, h_max)
    phase = np.exp(2j * np.pi * np.outer(grid, np.arange(lot_size)))
    total = np.zeros((image_size, image_size))
    index = np.arange(lot_size)
    for ox, oy in origins:
        lot = s[np.ix_((ox + index) % n, (oy + index) % n)] - c
        total += np.abs(phase @ lot @ phase.T) ** 2
    return total / (len(origins) * lot_size**2)


def lot_intensity_direct(lattice, lot_size, origin, image_size=64, h_max=1.0) -> np.ndarray:
    """The direct M^2 L^2 sum of DESIGN.md for one lot (tiny inputs only)."""
    s = np.asarray(lattice, dtype=np.float64)
    n, c = s.shape[0], s.mean()
    grid = reciprocal_grid(image_size, h_max)
    image = np.zeros((image_size, image_size))
    for a, h in enumerate(grid):
        for b, k in enumerate(grid):
            total = 0j
            for x in range(lot_size):
                for y in range(lot_size):
                    value = s[(origin[0] + x) % n, (origin[1] + y) % n] - c
                    total += value * np.exp(2j * np.pi * (h * x + k * y))
            image[a, b] = abs(total) ** 2 / lot_size**2
    return image


def all_lots_intensity(lattice, lot_size, image_size=64, h_max=1.0) -> np.ndarray:
    """The explicit average over all N^2 lot origins."""
    n = np.asarray(lattice).shape[0]
    origins = [(x, y) for x in range(n) for y in range(n)]
    return lot_intensity(lattice, lot_size, origins, image_size, h_max)


def warren_cowley_intensity(alpha_by_vector: dict, concentration: float, image_size=64, h_max=1.0) -> np.ndarray:
    """c (1-c) sum_v alpha(v) cos 2 pi (h vx + k vy) as a plain loop over vectors."""
    grid = reciprocal_grid(image_size, h_max)
    h, k = np.meshgrid(grid, grid, indexing="ij")
    total = np.zeros_like(h)
    for (vx, vy), value in alpha_by_vector.items():
        total += value * np.cos(2 * np.pi * (h * vx + k * vy))
    return concentration * (1 - concentration) * total
