"""Where each pixel of a measured plane lies in the 2-D model's reciprocal space.

A calibrated image maps pixel (row, column) to the file's axes in r.l.u. (``origin``, ``pixels_per_rlu``,
``rotation``), and those to the model's (h, k) about the window's centre through the crystal's reciprocal
lattice in the plane (cfsx.correction.zones): x = R D (p - o) in the file's axes, (h, k) = B^-T (x - centre) for the
lattice basis B. An uncalibrated image is taken as the training window itself, h, k in [-h_max, h_max).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfsx.config import CorrectionConfig, GeometryConfig
from cfsx.correction.lattice import PlaneLattice, plane_lattice
from cfsx.errors import DataError
from cfsx.io.nexus import axis_letter, short_axis_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PixelMap:
    """Pixels -> the model's (h, k) about the window's centre: (h, k) = A (p - origin) - shift."""

    matrix: np.ndarray  # (2, 2) A
    origin: np.ndarray  # (2,) pixel
    shift: np.ndarray  # (2,) the centre in model coordinates
    lattice: PlaneLattice
    to_file: np.ndarray  # (2, 2) R D: pixel offsets -> the file's axes (r.l.u.); zeros uncalibrated

    @classmethod
    def of(cls, shape: tuple[int, int], geometry: GeometryConfig, h_max: float, image_size: int) -> PixelMap:
        """The map of an image of ``shape`` (geometry resolved: see ``resolve_geometry``)."""
        if not geometry.calibrated:
            window, half_cell = 2 * h_max, h_max / image_size
            scale = np.array([window / shape[0], window / shape[1]])
            origin = np.array([shape[0], shape[1]]) * (h_max + half_cell) / window - 0.5
            return cls(np.diag(scale), origin, np.zeros(2), plane_lattice("P", None), np.zeros((2, 2)))
        lattice = lattice_of(geometry)
        angle = math.radians(geometry.rotation)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        to_file = rotation @ np.diag(1.0 / np.asarray(geometry.pixels_per_rlu, dtype=np.float64))
        inverse_basis = np.linalg.inv(lattice.matrix.T)
        centre = np.asarray(centre_point(geometry, lattice), dtype=np.float64)
        return cls(inverse_basis @ to_file, np.asarray(geometry.origin, dtype=np.float64), inverse_basis @ centre,
                   lattice, to_file)  # fmt: skip

    def __call__(self, rows: slice, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(h, k) of the pixels of ``rows``, as arrays that broadcast to them (a column and a row when A is
        diagonal, so no full-size grid is made)."""
        first, last, _ = rows.indices(shape[0])
        r = np.arange(first, last, dtype=np.float64)[:, None] - self.origin[0]
        c = np.arange(shape[1], dtype=np.float64)[None, :] - self.origin[1]
        (a, b), (d, e) = self.matrix
        h = a * r - self.shift[0] + (b * c if b else 0.0)
        k = e * c - self.shift[1] + (d * r if d else 0.0)
        return h, k

    def pixel_of(self, h: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (fractional) pixel row and column of model (h, k): the inverse of the map."""
        inverse = np.linalg.inv(self.matrix)
        h, k = np.asarray(h) + self.shift[0], np.asarray(k) + self.shift[1]
        return (self.origin[0] + inverse[0, 0] * h + inverse[0, 1] * k,
                self.origin[1] + inverse[1, 0] * h + inverse[1, 1] * k)  # fmt: skip

    def q(self, rows: slice, shape: tuple[int, int]) -> np.ndarray:
        """|Q| of the pixels of ``rows`` in the file's r.l.u. (axes taken as orthonormal)."""
        first, last, _ = rows.indices(shape[0])
        r = np.arange(first, last, dtype=np.float64)[:, None] - self.origin[0]
        c = np.arange(shape[1], dtype=np.float64)[None, :] - self.origin[1]
        (a, b), (d, e) = self.to_file
        return np.hypot(a * r + b * c, d * r + e * c)

    def lattice_distance(self, h: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Distance in the file's r.l.u. from (h, k) to the nearest lattice point (integer h, k)."""
        dh, dk = h - np.round(h), k - np.round(k)
        (a, b), (c, d) = self.lattice.matrix
        return np.hypot(a * dh + c * dk, b * dh + d * dk)

    def point_of(self, model: np.ndarray) -> np.ndarray:
        """The (row, column) r.l.u. of model coordinates about the centre (a lattice point for integers)."""
        return self.lattice.to_file(np.asarray(model, dtype=np.float64) + self.lattice.to_model(self.centre))

    @property
    def centre(self) -> np.ndarray:
        """The window's centre in the file's axes."""
        return self.lattice.matrix.T @ self.shift + 0.0


def lattice_of(geometry: GeometryConfig) -> PlaneLattice:
    """The crystal's reciprocal lattice in the plane, from geometry.lattice, .axes and .plane."""
    letters = None
    if geometry.axes is not None:
        found = tuple(axis_letter(name) for name in geometry.axes)
        letters = found if None not in found else None
    return plane_lattice(geometry.lattice, letters, float(geometry.plane))


def centre_point(geometry: GeometryConfig, lattice: PlaneLattice) -> list[float]:
    """The window's centre [row, column] in the file's axes: given, or the lattice point nearest the origin;
    refused unless it is a lattice point of the plane."""
    if geometry.centre is None:
        return [float(v) for v in lattice.nearest_point([0.0, 0.0])]
    if isinstance(geometry.centre, dict):
        raise DataError("the centre is given by axis names, but the image's axes have no names")
    centre = [float(v) for v in geometry.centre]
    if not lattice.is_point(centre):
        nearest = " or ".join(axis_values(geometry.axes, p, ",") for p in _nearby_points(lattice, centre))
        raise DataError(
            f"the centre {axis_values(geometry.axes, centre)} is not a reciprocal lattice point of the "
            f"{lattice.name} lattice in this plane ({lattice.describe()}); lattice points nearby: {nearest}"
        )
    return centre


def _nearby_points(lattice: PlaneLattice, point: list[float]) -> list[np.ndarray]:
    model = np.floor(lattice.to_model(point))
    corners = [model + np.array(step) for step in ((0, 0), (0, 1), (1, 0), (1, 1))]
    points = [lattice.to_file(corner) for corner in corners]
    return sorted(points, key=lambda p: float(np.hypot(*(p - np.asarray(point)))))[:2]


def axis_values(names: list[str] | None, point: Any, separator: str = ", ") -> str:
    """'L=4, H=-2' for the point (4, -2) of axes named [0,0,L] and [H,0,0]; '[4, -2]' without names."""
    values = [f"{float(v):g}" for v in point]
    if not names:
        return f"[{', '.join(values)}]"
    return separator.join(f"{short_axis_name(name)}={value}" for name, value in zip(names, values, strict=True))


def resolve_geometry(geometry: GeometryConfig, names: list[str] | None, plane: float | None = None) -> GeometryConfig:
    """The geometry with the image's axis names (when it names none of its own), its plane's third index, and a
    centre given by names ({H: -2, L: 4}) turned into [row, column]."""
    changes: dict[str, Any] = {}
    if geometry.axes is None and names:
        changes["axes"] = list(names)
    if plane is not None:
        changes["plane"] = float(plane)
    axes = changes.get("axes", geometry.axes)
    if isinstance(geometry.centre, dict):
        changes["centre"] = named_point(geometry.centre, axes)
    return dataclasses.replace(geometry, **changes) if changes else geometry


def named_point(values: dict[str, float], names: list[str] | None) -> list[float]:
    """{H: -2, L: 4} as [row, column] of axes named ``names`` (matched by name or by crystal axis letter)."""
    if not names:
        raise DataError(f"the centre {values} names axes, but the image's axes have no names: give it as [row, column]")
    point: list[float | None] = [None, None]
    for key, value in values.items():
        matches = [
            index for index, name in enumerate(names)
            if key.strip().lower() in (name.strip().lower(), (axis_letter(name) or "\0"))
        ]  # fmt: skip
        if len(matches) != 1 or point[matches[0]] is not None:
            shown = ", ".join(short_axis_name(name) for name in names)
            raise DataError(f"the centre names an axis {key!r}; the image's axes are {shown} (rows, columns)")
        point[matches[0]] = float(value)
    return [float(v) for v in point]  # type: ignore[arg-type]


def calibrate_from_file(config: CorrectionConfig, shape: tuple[int, int], info: dict[str, Any]) -> CorrectionConfig:
    """The config with the calibration of the file's bin edges in r.l.u. (when it has none of its own), the
    file's axis names and its plane.

    Pixel i of an axis with edges e_0..e_n covers [e_i, e_i+1], so h = 0 lies at pixel -e_0 / step - 1/2.
    """
    axes = info.get("axes") or {}
    selected = axes.get("plane") or {}
    plane = selected.get("requested", selected.get("value"))  # the plane asked for, not its nearest slice's centre
    names = axes.get("names") if axes.get("rlu") else None
    if config.geometry.calibrated or not config.geometry.file_axes or not axes or not axes.get("rlu"):
        geometry = resolve_geometry(config.geometry, names if config.geometry.calibrated else None, plane)
        return dataclasses.replace(config, geometry=geometry)
    origin, pixels_per_rlu = [], []
    for (first, last), pixels in zip((axes["rows"], axes["columns"]), shape, strict=True):
        step = (last - first) / pixels
        if not step > 0:
            raise DataError(f"the file's axes {first}..{last} do not increase")
        origin.append(-first / step - 0.5)
        pixels_per_rlu.append(1.0 / step)
    geometry = dataclasses.replace(config.geometry, origin=origin, pixels_per_rlu=pixels_per_rlu)
    return dataclasses.replace(config, geometry=resolve_geometry(geometry, names, plane))
