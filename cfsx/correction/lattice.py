"""The crystal's reciprocal lattice in the measured plane: its centring's allowed points and the basis the model's h, k
run along (``plane_lattice``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cfsx.errors import DataError
from cfsx.io.nexus import LETTERS


def _allowed(centring: str, hkl: tuple[int, int, int]) -> bool:
    """Whether the integer point hkl is a reciprocal lattice point of a cell of this centring."""
    h, k, l = hkl  # noqa: E741  (the crystallographers' name)
    return {
        "P": True,
        "I": (h + k + l) % 2 == 0,
        "F": h % 2 == k % 2 == l % 2,
        "C": (h + k) % 2 == 0,
        "A": (k + l) % 2 == 0,
        "B": (h + l) % 2 == 0,
    }[centring]


@dataclass(frozen=True)
class PlaneLattice:
    """The crystal's reciprocal lattice in one plane: the 2-D model's basis in the file's (row, column) axes, a
    lattice point of the plane (``offset``), and whether the plane passes through the origin (Friedel's law)."""

    basis: tuple[tuple[float, float], tuple[float, float]]  # b1 (model h), b2 (model k), in (row, column) r.l.u.
    offset: tuple[float, float] = (0.0, 0.0)
    through_origin: bool = True
    name: str = "P"  # the centring letter, or "basis" for a given one

    @property
    def matrix(self) -> np.ndarray:
        """(2, 2): rows b1 and b2; a point of the plane is offset + h b1 + k b2."""
        return np.asarray(self.basis, dtype=np.float64)

    def to_model(self, point: Any) -> np.ndarray:
        """Model coordinates (h, k) of (row, column) points (last axis), relative to ``offset``."""
        point = np.asarray(point, dtype=np.float64) - np.asarray(self.offset)
        return np.linalg.solve(self.matrix.T, point.T).T

    def to_file(self, model: Any) -> np.ndarray:
        """(row, column) of model coordinates (last axis): the inverse of ``to_model``."""
        return np.asarray(model, dtype=np.float64) @ self.matrix + np.asarray(self.offset)

    def is_point(self, point: Any) -> bool:
        """Whether (row, column) is a lattice point of the plane."""
        model = self.to_model(point)
        return bool(np.allclose(model, np.round(model), atol=1e-6))

    def nearest_point(self, point: Any) -> np.ndarray:
        """The lattice point of the plane nearest (in model coordinates) to (row, column)."""
        return self.to_file(np.round(self.to_model(point)))

    def describe(self) -> str:
        (a, b), (c, d) = self.basis
        return f"{self.name}: b1 = ({a:g}, {b:g}), b2 = ({c:g}, {d:g}) in (row, column) r.l.u."

    @property
    def rectangular(self) -> bool:
        """b1 along the rows and b2 along the columns: the model's mirrors are the plane's (axes taken as
        orthogonal, as for cubic, tetragonal and orthorhombic cells)."""
        return abs(self.matrix[0, 1]) < 1e-12 and abs(self.matrix[1, 0]) < 1e-12

    @property
    def square(self) -> bool:
        """Rectangular with |b1| = |b2| (in r.l.u. of the file's axes, taken as equally long): four-fold rotations."""
        return self.rectangular and abs(abs(self.matrix[0, 0]) - abs(self.matrix[1, 1])) < 1e-9


def plane_lattice(lattice: str | list, letters: tuple[str, str] | None, plane: float = 0.0) -> PlaneLattice:
    """The reciprocal lattice of a cell of centring ``lattice`` (P, I, F, C, A, B) in the plane whose rows and
    columns run along the crystal axes ``letters`` (e.g. ('l', 'h')) and whose third index is ``plane``;
    or, for ``lattice`` given as two vectors [[r1, c1], [r2, c2]], that basis (in the file's axes)."""
    through_origin = abs(plane) < 1e-9
    if not isinstance(lattice, str):
        basis = np.asarray(lattice, dtype=np.float64)
        if basis.shape != (2, 2) or abs(np.linalg.det(basis)) < 1e-9:
            raise DataError(f"a lattice basis must be two independent vectors [[r1, c1], [r2, c2]], got {lattice!r}")
        return PlaneLattice(tuple(map(tuple, basis.tolist())), (0.0, 0.0), through_origin, "basis")
    if lattice == "P":
        return PlaneLattice(((1.0, 0.0), (0.0, 1.0)), (0.0, 0.0), through_origin, "P")
    if letters is None or len(set(letters)) != 2 or not set(letters) <= set(LETTERS):
        raise DataError(
            f"a {lattice} lattice needs the plane's axes (which of h, k, l the rows and columns run along); "
            "the image does not name them: give them as geometry.axes, for example [h, l]"
        )
    third = next(letter for letter in LETTERS if letter not in letters)

    def allowed(a: int, b: int, n: int) -> bool:
        index = {letters[0]: a, letters[1]: b, third: n}
        return _allowed(lattice, (index["h"], index["k"], index["l"]))

    if allowed(1, 0, 0) and allowed(0, 1, 0):
        basis = ((1.0, 0.0), (0.0, 1.0))
    elif allowed(1, 0, 0):
        basis = ((1.0, 0.0), (0.0, 2.0))
    elif allowed(0, 1, 0):
        basis = ((2.0, 0.0), (0.0, 1.0))
    elif allowed(1, 1, 0):
        basis = ((1.0, 1.0), (1.0, -1.0))
    else:
        basis = ((2.0, 0.0), (0.0, 2.0))
    offset = (0.0, 0.0)
    if float(plane).is_integer():
        n = int(plane)
        offset = next(((float(a), float(b)) for a in (0, 1) for b in (0, 1) if allowed(a, b, n)), (0.0, 0.0))
    return PlaneLattice(basis, offset, through_origin, lattice)
