"""The generalisation benchmark's independent simulator: exchange Monte Carlo at fixed couplings (Numba), the
correlations alpha of a lattice, and its diffraction images (lot averages, all-origins, Warren-Cowley sums, detector
renders), written from DESIGN.md section 1 alone. Nothing here calls cfsx; benchmarks/generalisation_data.py, which
re-exports every name, describes the physics and the numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TRACE_EVERY = 10
MAX_RANGE = 3
WIDE_RADIUS = 8
DETECTOR_SIZE = 512
DETECTOR_ORIGIN = (280, 220)


# --- vectors ----------------------------------------------------------------------------------


def coupling_vectors(max_range: int = MAX_RANGE) -> np.ndarray:
    """One of each pair v, -v with max(|dx|, |dy|) <= max_range, by shell: range R is a prefix."""
    vectors = [
        (dx, dy)
        for dx in range(max_range + 1)
        for dy in range(-max_range, max_range + 1)
        if dx > 0 or (dx == 0 and dy > 0)
    ]
    vectors.sort(key=lambda v: (max(abs(v[0]), abs(v[1])), v[0], v[1]))
    return np.array(vectors, dtype=np.int64)


def vectors_in_range(max_range: int) -> int:
    return ((2 * max_range + 1) ** 2 - 1) // 2


def cfs_vectors(n: int) -> np.ndarray:
    """CFS-n vectors in DESIGN.md's order: row-major over (dx, dy), 0 <= dx, dy < n, without (0, 0)."""
    return np.array([(dx, dy) for dx in range(n) for dy in range(n) if (dx, dy) != (0, 0)], dtype=np.int64)


# --- Monte Carlo (Numba) --------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _next(state):
    """splitmix64: the next 64-bit value of the generator in state[0]."""
    state[0] += _GOLDEN
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(state):
    return np.float64(_next(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _below(state, n):
    """A uniform integer in [0, n), n < 2^32 (multiply-shift on the high 32 bits)."""
    return np.int64(((_next(state) >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(cache=True)
def _energy_per_site(spins, field):
    total = 0.0
    n = spins.shape[0]
    for x in range(n):
        for y in range(n):
            total += spins[x, y] * field[x, y]
    return 0.5 * total / (n * n)


@njit(cache=True)
def _exchange_sweeps(spins, dxs, dys, couplings, reach, n_sweeps, trace_every, state):
    n = spins.shape[0]
    nv = couplings.shape[0]
    xp = np.empty((nv, n), np.int64)
    xm = np.empty((nv, n), np.int64)
    yp = np.empty((nv, n), np.int64)
    ym = np.empty((nv, n), np.int64)
    for u in range(nv):
        for x in range(n):
            xp[u, x] = (x + dxs[u] % n) % n
            xm[u, x] = (x + n - dxs[u] % n) % n
            yp[u, x] = (x + dys[u] % n) % n
            ym[u, x] = (x + n - dys[u] % n) % n
    field = np.zeros((n, n))
    for x in range(n):
        for y in range(n):
            f = 0.0
            for u in range(nv):
                f += couplings[u] * (spins[xp[u, x], yp[u, y]] + spins[xm[u, x], ym[u, y]])
            field[x, y] = f
    n1 = 0
    for x in range(n):
        for y in range(n):
            if spins[x, y] > 0:
                n1 += 1
    n0 = n * n - n1
    ones = np.empty((n1, 2), np.int64)
    zeros = np.empty((n0, 2), np.int64)
    i1 = 0
    i0 = 0
    for x in range(n):
        for y in range(n):
            if spins[x, y] > 0:
                ones[i1, 0] = x
                ones[i1, 1] = y
                i1 += 1
            else:
                zeros[i0, 0] = x
                zeros[i0, 1] = y
                i0 += 1
    trace = np.empty(n_sweeps // trace_every + 1)
    trace[0] = _energy_per_site(spins, field)
    accepted = 0
    if n1 == 0 or n0 == 0:
        trace[:] = trace[0]
        return accepted, trace
    for sweep in range(n_sweeps):
        for _ in range(n * n):
            i = _below(state, n1)
            j = _below(state, n0)
            ax = ones[i, 0]
            ay = ones[i, 1]
            bx = zeros[j, 0]
            by = zeros[j, 1]
            # Delta E of flipping a (+1 -> -1) and b (-1 -> +1): -2 h_a + 2 h_b - 4 J_ab, where J_ab
            # sums the couplings that join a and b (their pair term does not change).
            coupled = 0.0
            ddx = ax - bx
            if ddx < 0:
                ddx += n
            ddy = ay - by
            if ddy < 0:
                ddy += n
            if min(ddx, n - ddx) <= reach and min(ddy, n - ddy) <= reach:
                for u in range(nv):
                    if xp[u, bx] == ax and yp[u, by] == ay:
                        coupled += couplings[u]
                    if xm[u, bx] == ax and ym[u, by] == ay:
                        coupled += couplings[u]
            delta = 2.0 * (field[bx, by] - field[ax, ay]) - 4.0 * coupled
            if delta <= 0.0 or _uniform(state) < np.exp(-delta):
                spins[ax, ay] = -1
                spins[bx, by] = 1
                ones[i, 0] = bx
                ones[i, 1] = by
                zeros[j, 0] = ax
                zeros[j, 1] = ay
                for u in range(nv):
                    change = 2.0 * couplings[u]
                    field[xp[u, ax], yp[u, ay]] -= change
                    field[xm[u, ax], ym[u, ay]] -= change
                    field[xp[u, bx], yp[u, by]] += change
                    field[xm[u, bx], ym[u, by]] += change
                accepted += 1
        if (sweep + 1) % trace_every == 0:
            trace[(sweep + 1) // trace_every] = _energy_per_site(spins, field)
    return accepted, trace


def _as_lattice(lattice: np.ndarray) -> np.ndarray:
    lattice = np.asarray(lattice)
    if lattice.ndim != 2 or lattice.shape[0] != lattice.shape[1] or lattice.shape[0] < 1:
        raise ValueError(f"a lattice is a square 2-d array, got shape {lattice.shape}")
    if not np.isin(lattice, (0, 1)).all():
        raise ValueError("a lattice holds only 0 and 1")
    return lattice.astype(np.uint8)


def exchange_monte_carlo(
    lattice: np.ndarray,
    vectors: np.ndarray,
    couplings: np.ndarray,
    sweeps: int,
    seed: int,
    trace_every: int = TRACE_EVERY,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Kawasaki exchange Metropolis at fixed J: (final lattice, energy per site every trace_every sweeps, accepted).

    ``vectors`` are one of each pair v, -v; the lattice must be larger than twice their range.
    ``seed`` is any integer in [0, 2^64); the input lattice is not changed.
    """
    lattice = _as_lattice(lattice)
    vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, 2)
    couplings = np.asarray(couplings, dtype=np.float64)
    if couplings.shape != (len(vectors),):
        raise ValueError("one coupling per vector")
    reach = int(np.abs(vectors).max()) if len(vectors) else 0
    if lattice.shape[0] <= 2 * reach:
        size = lattice.shape[0]
        raise ValueError(f"a {size} x {size} lattice is too small for couplings of range {reach}")
    if sweeps < 0 or trace_every < 1:
        raise ValueError("sweeps >= 0 and trace_every >= 1")
    spins = (2 * lattice.astype(np.int8) - 1).astype(np.int8)
    state = np.array([int(seed) % 2**64], dtype=np.uint64)
    accepted, trace = _exchange_sweeps(
        spins, vectors[:, 0].copy(), vectors[:, 1].copy(), couplings, reach, int(sweeps), int(trace_every), state
    )
    return (spins > 0).astype(np.uint8), trace, int(accepted)


def energy_per_site(lattice: np.ndarray, vectors: np.ndarray, couplings: np.ndarray) -> float:
    """E / N^2 = sum_v J(v) mean_r sigma_r sigma_{r+v} (NumPy, the oracle of the kernel's trace)."""
    sigma = 2.0 * _as_lattice(lattice) - 1.0
    total = 0.0
    for (dx, dy), coupling in zip(np.asarray(vectors), np.asarray(couplings), strict=True):
        total += coupling * np.mean(sigma * np.roll(sigma, (-int(dx), -int(dy)), axis=(0, 1)))
    return float(total)


def instability(vectors: np.ndarray, couplings: np.ndarray, concentration: float, points: int = 64) -> float:
    """kappa = -4 c (1 - c) min_q J(q), J(q) = 2 sum_v J(v) cos 2 pi q.v (1 = mean-field ordering)."""
    q = np.arange(points) / points
    vectors = np.asarray(vectors, dtype=np.float64)
    phase = 2 * np.pi * (q[:, None, None] * vectors[None, None, :, 0] + q[None, :, None] * vectors[None, None, :, 1])
    transform = 2.0 * np.cos(phase) @ np.asarray(couplings, dtype=np.float64)
    return float(-4.0 * concentration * (1.0 - concentration) * transform.min())


# --- correlations -----------------------------------------------------------------------------


def autocorrelation(lattice: np.ndarray) -> np.ndarray:
    """Gamma(d) = mean_r (s_r - c)(s_{r+d} - c), periodic, every d: (N, N), Gamma[dx % N, dy % N]."""
    values = _as_lattice(lattice).astype(np.float64)
    values -= values.mean()
    spectrum = np.fft.rfft2(values)
    return np.fft.irfft2(spectrum * spectrum.conj(), s=values.shape) / values.size


def alpha_map(lattice: np.ndarray) -> np.ndarray:
    """alpha(d) for every periodic displacement: (N, N) indexed [dx % N, dy % N]."""
    concentration = float(_as_lattice(lattice).mean())
    if concentration in (0.0, 1.0):
        raise ValueError("alpha is undefined for a lattice that is all 0 or all 1")
    return autocorrelation(lattice) / (concentration * (1.0 - concentration))


def measure_alpha(lattice: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """alpha(v) for each vector (dx, dy), periodic."""
    values = alpha_map(lattice)
    vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, 2)
    size = values.shape[0]
    return values[vectors[:, 0] % size, vectors[:, 1] % size]


def alpha_window(lattice: np.ndarray, radius: int = WIDE_RADIUS) -> np.ndarray:
    """alpha over -radius..radius on both axes: (2R+1, 2R+1), [radius + dx, radius + dy]."""
    values = alpha_map(lattice)
    index = np.arange(-radius, radius + 1) % values.shape[0]
    return values[np.ix_(index, index)]


# --- images -----------------------------------------------------------------------------------


def reciprocal_axis(image_size: int = 64, h_max: float = 1.0) -> np.ndarray:
    """h_m = -h_max + 2 h_max m / M, m = 0..M-1."""
    return -h_max + 2.0 * h_max * np.arange(image_size) / image_size


def lot_average_image(
    lattice: np.ndarray, lot_size: int, origins: np.ndarray, h: np.ndarray, k: np.ndarray
) -> np.ndarray:
    """Mean over lots of |F(h, k)|^2 / L^2, F = sum_{x,y < L} (s - c) exp(2 pi i (h x + k y)), periodic wrap."""
    lattice = _as_lattice(lattice)
    size = lattice.shape[0]
    if not 1 <= lot_size <= size:
        raise ValueError(f"lot size {lot_size} outside 1..{size}")
    origins = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
    deviation = lattice - lattice.mean()
    local = np.arange(lot_size)
    rows = (origins[:, 0, None] + local[None, :]) % size
    columns = (origins[:, 1, None] + local[None, :]) % size
    lots = deviation[rows[:, :, None], columns[:, None, :]]  # (K, L, L)
    n_lots = len(origins)
    phase_h = 2 * np.pi * np.outer(np.asarray(h, dtype=np.float64), local)
    phase_k = 2 * np.pi * np.outer(np.asarray(k, dtype=np.float64), local)
    # F = E_h lot E_k^T with E = cos + i sin, as real two-dimensional matrix products over all lots at once.
    stacked = lots.transpose(1, 0, 2).reshape(lot_size, n_lots * lot_size)  # [x, (lot, y)]
    real = (np.cos(phase_h) @ stacked).reshape(-1, lot_size)  # [(m, lot), y]
    imaginary = (np.sin(phase_h) @ stacked).reshape(-1, lot_size)
    cos_k, sin_k = np.cos(phase_k).T, np.sin(phase_k).T
    amplitude_real = real @ cos_k - imaginary @ sin_k
    amplitude_imaginary = real @ sin_k + imaginary @ cos_k
    power = (amplitude_real**2 + amplitude_imaginary**2).reshape(len(phase_h), n_lots, len(phase_k))
    return power.mean(axis=1) / lot_size**2


def cosine_sum(displacements: np.ndarray, weights: np.ndarray, h: np.ndarray, k: np.ndarray) -> np.ndarray:
    """sum_{a,b} G[a, b] cos 2 pi (h d_a + k d_b) for G with G(-d) = G(d): (len(h), len(k))."""
    displacements = np.asarray(displacements, dtype=np.float64)
    phase_h = 2 * np.pi * np.outer(np.asarray(h, dtype=np.float64), displacements)
    phase_k = 2 * np.pi * np.outer(np.asarray(k, dtype=np.float64), displacements)
    weights = np.asarray(weights, dtype=np.float64)
    return np.cos(phase_h) @ weights @ np.cos(phase_k).T - np.sin(phase_h) @ weights @ np.sin(phase_k).T


def fejer(lot_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Displacements -(L-1)..(L-1) and the weights 1 - |d| / L of one axis of an L-site lot."""
    displacements = np.arange(-(lot_size - 1), lot_size)
    return displacements, 1.0 - np.abs(displacements) / lot_size


def all_origins_image(lattice: np.ndarray, lot_size: int, h: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The exact mean of the lot intensity over all N^2 origins of L x L lots.

    = sum_d Gamma(d) (1 - |dx|/L)(1 - |dy|/L) cos 2 pi (h dx + k dy), Gamma the periodic autocorrelation.
    """
    lattice = _as_lattice(lattice)
    size = lattice.shape[0]
    if not 1 <= lot_size <= size:
        raise ValueError(f"lot size {lot_size} outside 1..{size}")
    displacements, window = fejer(lot_size)
    gamma = autocorrelation(lattice)[np.ix_(displacements % size, displacements % size)]
    return cosine_sum(displacements, gamma * np.outer(window, window), h, k)


def warren_cowley_image(
    alpha: np.ndarray, concentration: float, h: np.ndarray, k: np.ndarray, lot_size: int | None = None
) -> np.ndarray:
    """c (1 - c) sum_v alpha(v) cos 2 pi (h vx + k vy) over an alpha window (2R+1, 2R+1); Fejer-weighted with L."""
    alpha = np.asarray(alpha, dtype=np.float64)
    radius = alpha.shape[0] // 2
    if alpha.ndim != 2 or alpha.shape != (2 * radius + 1, 2 * radius + 1):
        raise ValueError(f"alpha must be a square array of odd size, got shape {alpha.shape}")
    displacements = np.arange(-radius, radius + 1)
    weights = concentration * (1.0 - concentration) * alpha
    if lot_size is not None:
        window = np.clip(1.0 - np.abs(displacements) / lot_size, 0.0, None)
        weights = weights * np.outer(window, window)
    return cosine_sum(displacements, weights, h, k)


def detector_axes(
    pixels_per_rlu: float, origin: tuple[float, float] = DETECTOR_ORIGIN, size: int = DETECTOR_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """h of each row and k of each column: h = (row - origin[0]) / ppr, k = (column - origin[1]) / ppr."""
    pixels = np.arange(size, dtype=np.float64)
    return (pixels - origin[0]) / pixels_per_rlu, (pixels - origin[1]) / pixels_per_rlu


def render_detector(
    lattice: np.ndarray,
    lot_size: int,
    pixels_per_rlu: float,
    origin: tuple[float, float] = DETECTOR_ORIGIN,
    size: int = DETECTOR_SIZE,
) -> np.ndarray:
    """The all-origins lot average on a size x size detector calibrated by (origin, pixels_per_rlu)."""
    h, k = detector_axes(pixels_per_rlu, origin, size)
    return all_origins_image(lattice, lot_size, h, k)
