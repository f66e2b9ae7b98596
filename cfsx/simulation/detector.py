"""Synthetic detector images: a simulated structure as a measurement would show it.

Used to prove ``cfsx correct`` and to score models on corrupted images (``cfsx evaluate
--corrupt``). A lattice is rendered as the exact all-origins lot average on a detector grid of
``pixels_per_rlu`` pixels per reciprocal lattice unit with h = k = 0 at ``beam_centre``, then
corrupted: Bragg peaks at integer h, k, a module gap and a beamstop with its arm (flagged -1, as
detectors do), a falloff exp(-B q^2), Poisson counting noise and an arbitrary scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfsx.errors import DataError
from cfsx.physics import engine

CORRUPTIONS = ("scale", "bragg", "gaps", "falloff", "noise")


@dataclass(frozen=True)
class Detector:
    """A synthetic square detector: where h, k fall on it, and the corruptions a measured image suffers."""

    size: int = 512
    pixels_per_rlu: int = 160
    beam_centre: tuple[int, int] = (280, 220)
    falloff_b: float = 0.25  # r.l.u.^-2
    bragg_height: float = 2000.0  # in units of the mean diffuse intensity
    bragg_width: float = 1.5  # pixels (Gaussian sigma)

    def hk(self) -> tuple[np.ndarray, np.ndarray]:
        rows, columns = np.meshgrid(np.arange(self.size), np.arange(self.size), indexing="ij")
        return (rows - self.beam_centre[0]) / self.pixels_per_rlu, (columns - self.beam_centre[1]) / self.pixels_per_rlu

    def render(self, lattice: np.ndarray, lot_size: int) -> np.ndarray:
        """The all-origins lot average of the lattice on the detector's pixels."""
        # A grid of 2 P h_max points over [-h_max, h_max) has the pixel pitch 1/P with h = 0 at index P h_max.
        reach = max(self.beam_centre[0], self.beam_centre[1], self.size - min(self.beam_centre)) / self.pixels_per_rlu
        h_max = float(np.ceil(reach))
        points = int(2 * h_max * self.pixels_per_rlu)
        wide = engine.all_lots_intensity(lattice, lot_size, points, h_max)
        centre = int(h_max * self.pixels_per_rlu)
        top, left = centre - self.beam_centre[0], centre - self.beam_centre[1]
        return wide[top : top + self.size, left : left + self.size]

    def corrupt(self, image: np.ndarray, kinds: set[str], rng: np.random.Generator, flux: float = 3.0) -> np.ndarray:
        """Apply the named corruptions; ``flux`` is the mean count per pixel of the noise."""
        unknown = set(kinds) - set(CORRUPTIONS)
        if unknown:
            raise DataError(f"unknown corruption {sorted(unknown)[0]!r}; known: {', '.join(CORRUPTIONS)}")
        h, k = self.hk()
        mean = image.mean()
        out = image.copy()
        if "falloff" in kinds:
            out *= np.exp(-self.falloff_b * (h**2 + k**2))
        if "bragg" in kinds:
            distance_squared = (h - np.round(h)) ** 2 + (k - np.round(k)) ** 2
            out += (
                self.bragg_height
                * mean
                * np.exp(-distance_squared * self.pixels_per_rlu**2 / (2 * self.bragg_width**2))
            )
        if "noise" in kinds:
            out = rng.poisson(out * flux / mean) * mean / flux
        if "scale" in kinds:
            out *= 1234.5
        if "gaps" in kinds:
            out[:, self.size * 300 // 512 : self.size * 308 // 512] = -1.0
            out[(np.hypot(h, k) < 0.12) | ((np.abs(k) < 0.03) & (h < 0))] = -1.0
        return out

    def correction_overrides(self) -> list[str]:
        """The cfsx correct settings for these images: their calibration, lattice Bragg mask, raw counts."""
        return [
            f"geometry.origin=[{self.beam_centre[0]}, {self.beam_centre[1]}]",
            f"geometry.pixels_per_rlu=[{self.pixels_per_rlu}, {self.pixels_per_rlu}]",
            "bragg.method=lattice",
            "mask.zeros=values",
        ]
