"""The physics engine: the only importer of the compiled ``_engine`` module.

Each function validates its inputs, hands Fortran-ordered arrays of the exact dtype to
the kernel, turns the kernel's status code into a clear ``EngineError`` and returns
NumPy arrays in the conventions of DESIGN.md (lattice ``s[x, y]``, image ``I[h, k]``).
Random generator states are int64 arrays of four words; functions that draw random
numbers take a state and return the advanced one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from cfsx import _engine
from cfsx.errors import EngineError

if TYPE_CHECKING:
    from cfsx.config import DiffractionConfig, FeedbackConfig

_STATUS = {
    1: "bad dimensions",
    2: "bad values",
    3: "lattice values must be 0 or 1",
}


def _check_status(status: int, what: str) -> None:
    if status != 0:
        raise EngineError(f"{what}: {_STATUS.get(int(status), f'status {int(status)}')}")


def _as_lattice(lattice: np.ndarray) -> np.ndarray:
    """Validate a lattice and return it as a Fortran-ordered int8 array."""
    array = np.asarray(lattice)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] < 1:
        raise EngineError(f"lattice must be a square 2-D array, got shape {array.shape}")
    if array.dtype.kind not in "biu":
        raise EngineError(f"lattice must hold integers 0/1, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise EngineError("lattice values must be 0 or 1")
    return np.asfortranarray(array, dtype=np.int8)


def _as_vectors(vectors: np.ndarray, size: int) -> np.ndarray:
    """Validate (D, 2) integer vectors against an N x N lattice; Fortran wants (2, D)."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != 2 or array.dtype.kind not in "iu":
        raise EngineError(f"vectors must be integers of shape (D, 2), got {array.dtype} {array.shape}")
    if array.size and np.abs(array).max() > size // 2:
        raise EngineError(f"vectors up to {int(np.abs(array).max())} do not fit a {size} x {size} periodic lattice")
    if np.any(np.all(array % size == 0, axis=1)):
        raise EngineError("a vector is zero (modulo the lattice size)")
    return np.asfortranarray(array.T, dtype=np.int32)


def _as_values(values: np.ndarray, length: int, name: str, bound: float | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (length,):
        raise EngineError(f"{name} must have shape ({length},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise EngineError(f"{name} contains NaN or infinite values")
    if bound is not None and np.any(np.abs(array) > bound):
        raise EngineError(f"{name} must lie in [-{bound:g}, {bound:g}]")
    return np.ascontiguousarray(array)


def _as_state(state: np.ndarray) -> np.ndarray:
    array = np.asarray(state)
    if array.shape != (4,) or array.dtype != np.int64:
        raise EngineError("a generator state is an int64 array of 4 words (use seed_state)")
    return array.copy()


MAX_INT32 = 2**31 - 1  # the engine counts in 32-bit integers


def _positive_int(value: int, name: str, largest: int = MAX_INT32) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= largest:
        raise EngineError(f"{name} must be an integer in 1..{largest}, got {value!r}")
    return int(value)


def _count(value: int, name: str = "count") -> int:
    """A number of values to draw: 0 or more (at most MAX_COUNT)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_COUNT:
        raise EngineError(f"{name} must be an integer in 0..{MAX_COUNT}, got {value!r}")
    return int(value)


MAX_COUNT = 2**28  # random numbers drawn in one call (a 2 GiB array)
MAX_LATTICE = 2**14  # lattice sites along one side (268 million sites)


def _lattice_out(lattice: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(lattice, dtype=np.uint8)


# --- random generator -------------------------------------------------------------------


def seed_state(seed: int) -> np.ndarray:
    """The generator state for a seed in [0, 2**64) (xoshiro128**, seeded by MurmurHash3 mixing)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise EngineError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    signed = int(np.array(int(seed), dtype=np.uint64).view(np.int64))
    return np.asarray(_engine.seed_state(signed), dtype=np.int64)


def random_uint32(count: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``count`` raw 32-bit outputs (as int64) and the advanced state."""
    state, values = _engine.random_uint32(_count(count), _as_state(state))
    return np.asarray(values), state


def random_uniform(count: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uniform numbers in [0, 1) and the advanced state."""
    state, values = _engine.random_uniform(_count(count), _as_state(state))
    return np.asarray(values), state


def random_below(count: int, high: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``count`` integers in [0, high) and the advanced state."""
    high = _positive_int(high, "high")
    state, values = _engine.random_below(_count(count), high, _as_state(state))
    return np.asarray(values), state


# --- Monte Carlo -----------------------------------------------------------------------


def random_lattice(size: int, concentration: float, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An N x N lattice with exactly round(c N^2) occupied sites at random positions."""
    size = _positive_int(size, "lattice size", MAX_LATTICE)
    if not np.isfinite(concentration) or not 0.0 <= concentration <= 1.0:
        raise EngineError(f"concentration must be in [0, 1], got {concentration!r}")
    n_occupied = int(round(concentration * size * size))
    state, lattice, status = _engine.random_lattice(size, n_occupied, _as_state(state))
    _check_status(status, "random_lattice")
    return _lattice_out(lattice), state


def metropolis_sweeps(
    lattice: np.ndarray, vectors: np.ndarray, couplings: np.ndarray, n_sweeps: int, state: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``n_sweeps`` sweeps (N*N attempted swaps each) at fixed J; returns (lattice, state, accepted)."""
    lattice_f = _as_lattice(lattice)
    vectors_f = _as_vectors(vectors, lattice_f.shape[0])
    couplings = _as_values(couplings, vectors_f.shape[1], "couplings")
    n_sweeps = _positive_int(n_sweeps, "n_sweeps")
    state, lattice_f, n_accepted, status = _engine.metropolis_sweeps(
        vectors_f, couplings, n_sweeps, _as_state(state), lattice_f
    )
    _check_status(status, "metropolis_sweeps")
    return _lattice_out(lattice_f), state, int(n_accepted)


def measure_alpha(lattice: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """alpha(v) = (<s_r s_{r+v}> - c^2) / (c (1 - c)) for each vector, periodic."""
    lattice_f = _as_lattice(lattice)
    vectors_f = _as_vectors(vectors, lattice_f.shape[0])
    if lattice_f.min() == lattice_f.max():
        raise EngineError("alpha is undefined for a lattice that is all 0 or all 1")
    alpha, status = _engine.measure_alpha(vectors_f, lattice_f)
    _check_status(status, "measure_alpha")
    return np.asarray(alpha)


# Why the feedback stopped: the index is the code the Fortran kernel returns (fortran/montecarlo.f90).
STOP_REASONS = ("reached", "stalled", "max_cycles")
# The adaptive update: a component's gain grows by this factor while its error keeps its sign, shrinks by
# the next when the sign flips, and stays within [ADAPTIVE_GAIN_MIN, coupling_bound]. Chosen on 30 CFS4
# targets measured on lattices at known couplings (docs/performance.md, issue 13).
ADAPTIVE_GAIN_UP, ADAPTIVE_GAIN_DOWN, ADAPTIVE_GAIN_MIN = 1.2, 0.7, 0.02


@dataclass(frozen=True)
class FeedbackResult:
    """The lattice the feedback loop returns, the correlations it reached, and how it got there."""

    lattice: np.ndarray  # (N, N) uint8
    achieved: np.ndarray  # (D,) measured alpha of the returned lattice
    couplings: np.ndarray  # (D,) the J the lattice was made with
    cycles: int
    n_accepted: int
    state: np.ndarray
    reason: int = 0  # index into STOP_REASONS


@dataclass(frozen=True)
class FeedbackSettings:
    """How Welberry's feedback loop runs (DESIGN.md 1): J += gain (alpha - target) after every
    ``sweeps_per_cycle`` Monte Carlo sweeps, until max |alpha - target| <= ``tolerance`` or ``max_cycles``,
    with |J| <= ``coupling_bound``.

    ``stall_cycles`` > 0 also stops when the misfit has not improved by more than ``stall_noise`` for that
    many cycles, or when every component still off target has its coupling at the bound, and returns the
    best lattice seen; 0 is Welberry's loop exactly. ``adaptive`` gives each component its own gain,
    adapted to the sign of its error (ADAPTIVE_GAIN_*).
    """

    gain: float
    sweeps_per_cycle: int
    tolerance: float
    max_cycles: int
    coupling_bound: float
    stall_cycles: int = 0
    stall_noise: float = 0.0
    adaptive: bool = False

    @classmethod
    def of(cls, feedback: FeedbackConfig, lattice_size: int) -> FeedbackSettings:
        """The settings of a config's ``feedback`` section on an N x N lattice (stall noise: the lattice's own,
        1/N): where a new feedback option goes from the config to the kernel."""
        return cls(gain=feedback.gain, sweeps_per_cycle=feedback.sweeps_per_cycle,
                   tolerance=feedback.tolerance_for(lattice_size), max_cycles=feedback.max_cycles,
                   coupling_bound=feedback.coupling_bound, stall_cycles=feedback.stall_cycles,
                   stall_noise=1.0 / lattice_size, adaptive=feedback.update == "adaptive")  # fmt: skip


def feedback(
    lattice: np.ndarray,
    vectors: np.ndarray,
    target: np.ndarray,
    state: np.ndarray,
    settings: FeedbackSettings,
    couplings: np.ndarray | None = None,
) -> FeedbackResult:
    """Drive the lattice towards target alpha by Welberry's feedback on J (DESIGN.md 1), as ``settings`` say,
    starting from ``couplings`` (default zero). The result says why it stopped (STOP_REASONS)."""
    gain, tolerance, coupling_bound = settings.gain, settings.tolerance, settings.coupling_bound
    stall_cycles, stall_noise = settings.stall_cycles, settings.stall_noise
    lattice_f = _as_lattice(lattice)
    vectors_f = _as_vectors(vectors, lattice_f.shape[0])
    n_vec = vectors_f.shape[1]
    target = _as_values(target, n_vec, "target correlations", bound=1.0)
    start = np.zeros(n_vec) if couplings is None else _as_values(couplings, n_vec, "couplings")
    named = (("gain", gain), ("tolerance", tolerance), ("coupling_bound", coupling_bound), ("stall_noise", stall_noise))
    for name, value in named:
        if not np.isfinite(value) or value < 0:
            raise EngineError(f"{name} must be a finite number >= 0, got {value!r}")
    if lattice_f.min() == lattice_f.max():
        raise EngineError("feedback needs a lattice with both occupied and empty sites")
    if not isinstance(stall_cycles, (int, np.integer)) or isinstance(stall_cycles, bool) or stall_cycles < 0:
        raise EngineError(f"stall_cycles must be an integer >= 0, got {stall_cycles!r}")
    state, lattice_f, couplings_out, alpha, cycles, n_accepted, reason, status = _engine.feedback_to_target(
        vectors_f,
        target,
        float(gain),
        _positive_int(settings.sweeps_per_cycle, "sweeps_per_cycle"),
        float(tolerance),
        _positive_int(settings.max_cycles, "max_cycles"),
        float(coupling_bound),
        int(stall_cycles),
        float(stall_noise),
        bool(settings.adaptive),
        ADAPTIVE_GAIN_UP,
        ADAPTIVE_GAIN_DOWN,
        ADAPTIVE_GAIN_MIN,
        _as_state(state),
        lattice_f,
        start.copy(),
    )
    _check_status(status, "feedback")
    return FeedbackResult(
        lattice=_lattice_out(lattice_f),
        achieved=np.asarray(alpha),
        couplings=np.asarray(couplings_out),
        cycles=int(cycles),
        n_accepted=int(n_accepted),
        state=state,
        reason=int(reason),
    )


# --- diffraction -----------------------------------------------------------------------


def reciprocal_grid(image_size: int, h_max: float) -> np.ndarray:
    """h_m = -h_max + 2 h_max m / M, m = 0..M-1 (the same grid is used for k)."""
    image_size = _positive_int(image_size, "image_size")
    if not np.isfinite(h_max) or h_max <= 0:
        raise EngineError(f"h_max must be a positive number, got {h_max!r}")
    return -h_max + 2.0 * h_max * np.arange(image_size) / image_size


@dataclass(frozen=True)
class _ReducedGrid:
    """The few distinct (h, k) an image needs, and how to expand them to M x M.

    exp(2 pi i h x) depends on h only modulo 1 for integer x, and a real lattice gives
    I(h, k) = I(-h, -k). So the kernels compute rows for the distinct values of h mod 1
    and columns for only one of each pair k, -k; ``pixel_index`` maps back.
    """

    h_values: np.ndarray
    k_values: np.ndarray
    pixel_index: np.ndarray  # (M, M): where each pixel is in the reduced image, flattened in Fortran order
    period: int  # P > 0 when h_values are exactly j / P, j = 0..P-1, P a power of two (FFT kernel)

    def expand(self, reduced: np.ndarray) -> np.ndarray:
        """The (M, M) image from the (n_h, n_k) reduced one (as the kernels return it)."""
        return np.asarray(reduced).ravel(order="F").take(self.pixel_index)


@lru_cache(maxsize=32)
def _reduced_grid(image_size: int, h_max: float) -> _ReducedGrid:
    decimals = 12
    fractional = np.round(np.mod(reciprocal_grid(image_size, h_max), 1.0), decimals) % 1.0
    h_values, h_index = np.unique(fractional, return_inverse=True)
    negated = np.round(np.mod(-h_values, 1.0), decimals) % 1.0
    negated_index = np.searchsorted(h_values, negated)
    count = len(h_values)
    periodic = count & (count - 1) == 0 and np.allclose(h_values, np.arange(count) / count, rtol=0, atol=1e-12)
    period = count if periodic else 0
    closed = np.all(negated_index < count) and np.allclose(h_values[np.minimum(negated_index, count - 1)], negated)
    if not closed:  # a grid without the -k partner of every k: compute every column
        return _ReducedGrid(h_values, h_values, h_index[:, None] + count * h_index[None, :], period)
    keep = h_values <= negated  # one of each pair (k, -k): the one in [0, 1/2]
    column_of = np.cumsum(keep) - 1
    k_kept = h_index  # index in h_values of every pixel column's k
    use_partner = ~keep[k_kept]
    columns = np.where(use_partner, column_of[negated_index[k_kept]], column_of[k_kept])
    # I(h, k) = I(-h, -k): a column whose k was dropped reads row -h of its partner.
    full_rows = np.where(use_partner[None, :], negated_index[h_index][:, None], h_index[:, None])
    return _ReducedGrid(
        h_values,
        np.ascontiguousarray(h_values[keep]),
        full_rows + count * columns[None, :],
        period,
    )


def diffract(lattice: np.ndarray, diffraction: DiffractionConfig, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image a config's ``diffraction`` section makes of a lattice (every lot origin, or ``n_lots`` random lots
    drawn from ``state``) and the lots' origins (none for every origin): where a new diffraction option goes from
    the config to the kernel."""
    if diffraction.n_lots == "all":
        image = all_lots_intensity(lattice, diffraction.lot_size, diffraction.image_size, diffraction.h_max)
        return image, np.zeros((0, 2), dtype=np.int32)
    origins, _ = random_origins(np.shape(lattice)[0], diffraction.n_lots, state)
    return lot_intensity(lattice, diffraction.lot_size, origins, diffraction.image_size, diffraction.h_max), origins


def random_origins(size: int, n_lots: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n_lots`` lot origins (x, y), uniform over an N x N lattice: shape (n_lots, 2)."""
    values, state = random_below(2 * _positive_int(n_lots, "n_lots"), _positive_int(size, "size"), state)
    return values.reshape(n_lots, 2), state


def _check_lot(lot_size: int, size: int) -> int:
    lot_size = _positive_int(lot_size, "lot_size")
    if lot_size > size:
        raise EngineError(f"lot size {lot_size} is larger than the lattice ({size} x {size})")
    return lot_size


def lot_intensity(
    lattice: np.ndarray, lot_size: int, origins: np.ndarray, image_size: int = 64, h_max: float = 1.0
) -> np.ndarray:
    """Mean over lots of |F(h, k)|^2 / L^2 for L x L lots at the given origins: (M, M) image."""
    lattice_f = _as_lattice(lattice)
    size = lattice_f.shape[0]
    lot_size = _check_lot(lot_size, size)
    origins = np.asarray(origins)
    if origins.ndim != 2 or origins.shape[1] != 2 or origins.shape[0] < 1 or origins.dtype.kind not in "iu":
        raise EngineError(f"origins must be integers of shape (K, 2), got {origins.dtype} {origins.shape}")
    if origins.min() < 0 or origins.max() >= size:
        raise EngineError(f"lot origins must lie in [0, {size})")
    grid = _reduced_grid(_positive_int(image_size, "image_size"), float(h_max))
    concentration = float(lattice_f.mean())
    origins_f = np.asfortranarray(origins.T, dtype=np.int32)
    if grid.period:
        intensity, status = _engine.lot_intensity_periodic(
            lattice_f, concentration, lot_size, origins_f, grid.period, grid.k_values
        )
    else:
        intensity, status = _engine.lot_intensity(
            lattice_f, concentration, lot_size, origins_f, grid.h_values, grid.k_values
        )
    _check_status(status, "lot_intensity")
    return grid.expand(np.asarray(intensity))


def cosine_transform(
    displacements: np.ndarray, weights: np.ndarray, image_size: int = 64, h_max: float = 1.0
) -> np.ndarray:
    """I(h, k) = sum_{a,b} G(a, b) cos 2 pi (h d_a + k d_b) on the M x M grid."""
    displacements = np.asarray(displacements)
    weights = np.asarray(weights, dtype=np.float64)
    n_d = displacements.shape[0] if displacements.ndim == 1 else -1
    if n_d < 1 or displacements.dtype.kind not in "iu" or weights.shape != (n_d, n_d):
        raise EngineError("cosine_transform needs integer displacements (D,) and weights (D, D)")
    if not np.all(np.isfinite(weights)):
        raise EngineError("weights contain NaN or infinite values")
    if not np.allclose(weights, weights[::-1, ::-1]) or not np.array_equal(displacements, -displacements[::-1]):
        raise EngineError("cosine_transform needs displacements -R..R and weights with G(-d) = G(d)")
    grid = _reduced_grid(_positive_int(image_size, "image_size"), float(h_max))
    intensity, status = _engine.cosine_transform(
        displacements.astype(np.int32), np.asfortranarray(weights), grid.h_values, grid.k_values
    )
    _check_status(status, "cosine_transform")
    return grid.expand(np.asarray(intensity))


def fejer_window(lot_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Displacements -(L-1)..(L-1) and the weights 1 - |d|/L of one axis of an L-site lot."""
    lot_size = _positive_int(lot_size, "lot size")
    displacements = np.arange(-(lot_size - 1), lot_size)
    return displacements, 1.0 - np.abs(displacements) / lot_size


def lot_alpha(lattice: np.ndarray, vectors: np.ndarray, lot_size: int, origins: np.ndarray) -> np.ndarray:
    """alpha(v) measured inside the lots only: the pairs (r, r + v) with both sites in the same lot.

    This is what a lot-averaged image can show at most; its distance from the lattice's periodic
    alpha (the training label) is the label noise that lot sampling adds.
    """
    values = np.asarray(_as_lattice(lattice), dtype=np.float64)
    size = values.shape[0]
    lot_size = _check_lot(lot_size, size)
    vectors = np.asarray(vectors)
    concentration = values.mean()
    deviation = values - concentration
    index = np.arange(lot_size)
    products = np.zeros(len(vectors))
    pairs = np.zeros(len(vectors))
    for origin_x, origin_y in np.asarray(origins):
        lot = deviation[np.ix_((origin_x + index) % size, (origin_y + index) % size)]
        for j, (dx, dy) in enumerate(vectors):
            if abs(dx) >= lot_size or abs(dy) >= lot_size:
                continue
            first = lot[max(0, -dx) : lot_size - max(0, dx), max(0, -dy) : lot_size - max(0, dy)]
            second = lot[max(0, dx) : lot_size - max(0, -dx), max(0, dy) : lot_size - max(0, -dy)]
            products[j] += (first * second).sum()
            pairs[j] += first.size
    with np.errstate(invalid="ignore", divide="ignore"):
        return products / pairs / (concentration * (1 - concentration))


def autocorrelation(lattice: np.ndarray) -> np.ndarray:
    """Gamma(d) = mean_r (s_r - c)(s_{r+d} - c), periodic, for every d: (N, N) = c (1-c) alpha(d)."""
    values = np.asarray(lattice, dtype=np.float64)
    values = values - values.mean()
    spectrum = np.fft.rfft2(values)
    return np.fft.irfft2(spectrum * spectrum.conj(), s=values.shape) / values.size


def all_lots_intensity(lattice: np.ndarray, lot_size: int, image_size: int = 64, h_max: float = 1.0) -> np.ndarray:
    """The exact mean of the lot intensity over every one of the N^2 lot origins.

    It equals the Warren-Cowley sum of the lattice's own periodic correlations, each term
    weighted by the Fejer window (1 - |dx|/L)(1 - |dy|/L): one FFT and one cosine transform.
    """
    lattice_f = _as_lattice(lattice)
    size = lattice_f.shape[0]
    lot_size = _check_lot(lot_size, size)
    displacements, window = fejer_window(lot_size)
    gamma = autocorrelation(lattice_f)[np.ix_(displacements % size, displacements % size)]
    return cosine_transform(displacements, gamma * np.outer(window, window), image_size, h_max)


def warren_cowley_intensity(
    alpha: np.ndarray,
    concentration: float,
    image_size: int = 64,
    h_max: float = 1.0,
    lot_size: int | None = None,
) -> np.ndarray:
    """Expected intensity c (1-c) sum_v alpha(v) cos 2 pi (h vx + k vy).

    ``alpha`` is a (2R+1, 2R+1) array over displacements -R..R on both axes (alpha at the
    centre is 1). With ``lot_size`` L each term is weighted by the Fejer window of an
    L x L lot, which gives the expectation of a finite-lot image.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.ndim != 2 or alpha.shape[0] != alpha.shape[1] or alpha.shape[0] % 2 == 0:
        raise EngineError(f"alpha must be a square array of odd size, got shape {alpha.shape}")
    radius = alpha.shape[0] // 2
    displacements = np.arange(-radius, radius + 1)
    weights = concentration * (1.0 - concentration) * alpha
    if lot_size is not None:
        window = np.clip(1.0 - np.abs(displacements) / _positive_int(lot_size, "lot_size"), 0.0, None)
        weights = weights * np.outer(window, window)
    return cosine_transform(displacements, weights, image_size, h_max)
