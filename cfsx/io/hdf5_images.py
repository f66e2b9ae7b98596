"""Images in HDF5 files: the dataset a spec names (NeXus NXdata and NXRefine, Mantid MDHisto, plain datasets), external
links confined to the file's folder, and the axes of volumes in reciprocal lattice units."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.errors import DataError

MANTID_SIGNAL = "MDHistoWorkspace/data/signal"

MAX_HDF5_LINKS = 32  # soft and external links followed for one HDF5 path (more: a cycle)


@dataclass(frozen=True)
class _Axis:
    """One axis of a 3-D volume: the h, k or l it runs along (None when its name says none), its name as shown,
    and its bins in r.l.u. (edges: one more than centres; strictly monotonic)."""

    letter: str | None
    name: str
    edges: np.ndarray
    centres: np.ndarray


VolumeAxes = Callable[[], list[_Axis]]  # the three axes of a volume in array order, read when asked


def hdf5_dataset(
    path: Path, inner: str, info: dict[str, Any], files: contextlib.ExitStack
) -> tuple[Any, VolumeAxes | None]:
    """The (unread) dataset ``inner`` of an HDF5 file (the signal of ``inner`` when that is an NXdata group), or
    without it the NeXus default plottable data or the Mantid MDHisto signal; with the r.l.u. axes of either
    in ``info``, and for a 3-D one the function that reads the axes of its volume."""
    import h5py
    import hdf5plugin  # noqa: F401  (registers the compression filters of detector data: bitshuffle, LZ4, ...)

    links = _Hdf5Links(path, files)
    file = files.enter_context(h5py.File(path, "r"))
    name = inner or (MANTID_SIGNAL if links.locate(file, MANTID_SIGNAL) is not None else "") or _nexus_signal(file)
    if not name:
        raise DataError(
            f"{path}: no NeXus default data (root attribute default -> NXentry -> NXdata with a signal); "
            f"give the dataset path as {path}::/path/to/data"
        )
    name = _group_signal(links, file, name)
    info["dataset"] = name
    dataset = links.dataset(file, name)
    where = f"{path}::{name}"
    volume: VolumeAxes | None = None
    if name == MANTID_SIGNAL:
        # Bin edges of the two axes; the signal is stored (Q2, Q1): rows along Q2.
        axes = [links.dataset(file, "MDHistoWorkspace/data/Q2"), links.dataset(file, "MDHistoWorkspace/data/Q1")]
        info["axes"] = {
            "rows": [float(axes[0][0]), float(axes[0][-1])],
            "columns": [float(axes[1][0]), float(axes[1][-1])],
            "names": [_text(axis.attrs.get("long_name", axis.name)) for axis in axes],
            "rlu": all(_text(axis.attrs.get("frame", "")) == "HKL" for axis in axes),
        }
        if dataset.ndim == 3:
            volume = functools.partial(_mantid_volume, links, file, dataset.shape, where)
    else:
        group = _nxdata_of(links, file, name, dataset)
        axes = _nexus_axes(group, dataset.shape) if group is not None else None
        if axes is not None:
            info["axes"] = axes
        if group is not None and dataset.ndim == 3:
            volume = functools.partial(_nexus_volume, group, dataset.shape, where)
    return dataset, volume


def _group_signal(links: _Hdf5Links, file, name: str) -> str:
    """``name``, or the path of its signal when ``name`` is an NXdata group with one (NXRefine's
    ``/entry/transform``): the signal is then read through the same link rules as any dataset."""
    import h5py

    found = links.locate(file, name)
    if found is None:
        return name
    group, part = found
    target = group if part is None else group.get(part)
    if not isinstance(target, h5py.Group) or _text(target.attrs.get("NX_class", "")) != "NXdata":
        return name
    signal = target.attrs.get("signal")
    return name if signal is None else f"{name.rstrip('/')}/{_text(signal)}"


def _nxdata_of(links: _Hdf5Links, file, name: str, dataset):
    """The NXdata group whose signal the dataset at ``name`` is: the group holding ``name`` in this file (where
    the signal may be an external link), else the dataset's own parent; None if neither."""
    parent, _, last = name.rstrip("/").rpartition("/")
    found = links.locate(file, parent)
    holder = None if found is None else found[0] if found[1] is None else found[0].get(found[1])
    for group, signal in ((holder, last), (dataset.parent, dataset.name.split("/")[-1])):
        if (
            group is not None
            and hasattr(group, "keys")
            and _text(group.attrs.get("NX_class", "")) == "NXdata"
            and _text(group.attrs.get("signal", "")) == signal
        ):
            return group
    return None


def _same_file_child(group, name: str):
    """The member ``name`` of ``group`` reached by a hard or soft link (never an external one), or None."""
    import h5py

    link = group.get(str(name), getlink=True)
    if not isinstance(link, h5py.HardLink | h5py.SoftLink):
        return None
    return group.get(str(name))


def _nexus_signal(file) -> str:
    """The path of the NeXus default plottable data: root ``default`` -> NXentry (its ``default``) -> NXdata's
    ``signal``; empty when the chain is not there. Only links inside the file are followed, except that the
    signal itself may be an external link (resolved, within the folder, like any other)."""
    import h5py

    group = file["/"]
    for _ in range(MAX_HDF5_LINKS):
        signal = group.attrs.get("signal")
        if _text(group.attrs.get("NX_class", "")) == "NXdata" and signal is not None:
            if isinstance(group.get(_text(signal), getlink=True), h5py.ExternalLink):
                return f"{group.name}/{_text(signal)}"  # NXRefine's transform: _Hdf5Links checks where it points
            found = _same_file_child(group, _text(signal))
            return found.name if found is not None else ""
        default = group.attrs.get("default")
        child = None if default is None else _same_file_child(group, _text(default))
        if child is None or not hasattr(child, "attrs") or not hasattr(child, "keys"):
            return ""
        group = child
    return ""


RLU_UNITS = {"r.l.u.", "r.l.u", "rlu", "reciprocal lattice units"}


def _axis_names(group) -> list[str]:
    """The ``axes`` attribute of an NXdata group as a list of names."""
    names = group.attrs.get("axes")
    names = [names] if isinstance(names, str | bytes) else list(names if names is not None else [])
    return [_text(name) for name in names]


def _nexus_axes(group, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """The r.l.u. axes of an image that is the signal of the NXdata ``group`` (its last two ``axes``), as bin
    edges."""
    names = _axis_names(group)
    if len(names) < 2 or len(shape) < 2:
        return None
    edges, labels = [], []
    for name, pixels in zip(names[-2:], shape[-2:], strict=True):
        axis = _same_file_child(group, name) if name != "." else None
        if axis is None or axis.ndim != 1 or _text(axis.attrs.get("units", "")).lower() not in RLU_UNITS:
            return None
        values = np.asarray(axis[()], dtype=np.float64)
        if len(values) == pixels + 1:  # bin edges
            edges.append([float(values[0]), float(values[-1])])
        elif len(values) == pixels and pixels > 1:  # bin centres of a uniform grid
            step = (values[-1] - values[0]) / (pixels - 1)
            edges.append([float(values[0] - step / 2), float(values[-1] + step / 2)])
        else:  # r.l.u. axes that do not fit the image: calibrating by them would place it wrongly
            raise DataError(f"{group.name}: its r.l.u. axis {name} has {len(values)} values for {pixels} pixels (it "
                            f"needs {pixels} bin centres or {pixels + 1} edges)")  # fmt: skip
        labels.append(_text(axis.attrs.get("long_name", name)))
    return {"rows": edges[0], "columns": edges[1], "names": labels, "rlu": True}


def _nexus_volume(group, shape: tuple[int, ...], where: str) -> list[_Axis]:
    """The three axes of a 3-D NXdata signal (its ``axes``, each a 1-D dataset in r.l.u. of this group)."""
    names = _axis_names(group)
    if len(names) != 3:
        raise DataError(f"{where}: its NXdata {group.name} names {len(names)} axes ({', '.join(names)}), not 3")
    axes = []
    for name, pixels in zip(names, shape, strict=True):
        axis = _same_file_child(group, name) if name != "." else None
        if axis is None or not hasattr(axis, "ndim"):
            raise DataError(f"{where}: its NXdata {group.name} has no axis dataset {name!r}")
        units = _text(axis.attrs.get("units", ""))
        if units.lower() not in RLU_UNITS:
            raise DataError(f"{where}: axis {name} is not in r.l.u. (units {units!r}), so no h, k, l plane is known")
        label = _text(axis.attrs.get("long_name", name))
        axes.append(_volume_axis(axis, pixels, [label, name], where))
    return axes


def _mantid_volume(links: _Hdf5Links, file, shape: tuple[int, ...], where: str) -> list[_Axis]:
    """The three axes of a 3-D Mantid MDHisto signal: stored (Q3, Q2, Q1), each bin edges in the HKL frame."""
    axes = []
    for number, pixels in zip((3, 2, 1), shape, strict=True):
        axis = links.dataset(file, f"MDHistoWorkspace/data/Q{number}")
        frame = _text(axis.attrs.get("frame", ""))
        if frame != "HKL":
            raise DataError(f"{where}: axis Q{number} is in the {frame or 'unnamed'} frame, not HKL (r.l.u.)")
        label = _text(axis.attrs.get("long_name", f"Q{number}"))
        axes.append(_volume_axis(axis, pixels, [label, f"Q{number}"], where))
    return axes


def _volume_axis(dataset, pixels: int, names: list[str], where: str) -> _Axis:
    """An axis of ``pixels`` slices from its 1-D dataset of bin edges (pixels + 1) or centres (pixels)."""
    values = np.asarray(dataset[()], dtype=np.float64).ravel() if dataset.ndim == 1 else np.zeros(0)
    if len(values) == pixels + 1:
        edges = values
        centres = (values[:-1] + values[1:]) / 2
    elif len(values) == pixels > 1:
        centres = values
        middles = (values[:-1] + values[1:]) / 2
        edges = np.concatenate([[2 * values[0] - middles[0]], middles, [2 * values[-1] - middles[-1]]])
    else:
        raise DataError(
            f"{where}: axis {names[0]} has {len(values)} values for {pixels} slices (neither bin centres nor edges)"
        )
    steps = np.diff(edges)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise DataError(f"{where}: axis {names[0]} is not strictly increasing or decreasing")
    letter = next((found for found in map(_hkl_letter, names) if found is not None), None)
    return _Axis(letter, names[0], edges, centres)


def _hkl_letter(name: str) -> str | None:
    """The h, k or l an axis name runs along: 'Ql' -> 'l', 'L' -> 'l', '[0,K,0]' -> 'k'; None otherwise."""
    text = name.strip().lower()
    if re.fullmatch(r"q?[hkl]", text):
        return text[-1]
    found = re.fullmatch(r"\[([^\]]*)\]", text)
    if found is None:
        return None
    parts = [part.strip() for part in found.group(1).split(",")]
    moving = [part for part in parts if part not in ("0", "0.0", "-0", "+0")]
    return moving[0] if len(parts) == 3 and len(moving) == 1 and moving[0] in ("h", "k", "l") else None


class _Hdf5Links:
    """Resolves HDF5 paths of one file: soft links anywhere, but external links, virtual-dataset sources and
    external raw-data files only to files in the folder of that file or its subfolders (the layouts of
    detector master files and of NXRefine's scan folders), after resolving symbolic links and '..'; anything
    else is refused with one DataError. Files it opens are closed with ``files``."""

    def __init__(self, path: Path, files) -> None:
        import os

        self.path = path
        self.folder = Path(os.path.abspath(path)).parent.resolve()
        self.files = files
        self.opened: dict[Path, Any] = {}

    def locate(self, file, name: str, shown: str = ""):
        """Where the object at ``name`` in ``file`` is, following the links it may follow: the group that holds
        it and its (hard-linked) name there, None for a group reached through a link, or None if there is none.
        The object itself is not opened. ``shown``: the dataset to name in errors (default ``name``)."""
        import h5py

        shown = shown or name
        parts, group, followed = _hdf5_parts(name), file["/"], 0
        while parts:
            part = parts.pop(0)
            link = group.get(part, getlink=True)
            if link is None:
                return None
            if isinstance(link, h5py.HardLink):
                if not parts:
                    return group, part
                group = group[part]
                if not isinstance(group, h5py.Group):
                    return None
                continue
            followed += 1
            if followed > MAX_HDF5_LINKS:
                raise DataError(f"{self.path}::{shown}: more than {MAX_HDF5_LINKS} links to follow (a cycle?)")
            if isinstance(link, h5py.SoftLink):
                parts = _hdf5_parts(link.path if link.path.startswith("/") else f"{group.name}/{link.path}") + parts
                group = group.file["/"]
            elif isinstance(link, h5py.ExternalLink):
                group = self._open(self._beside(link.filename, "external link", shown))["/"]
                parts = _hdf5_parts(link.path) + parts
            else:
                raise DataError(f"{self.path}::{shown}: a link of a kind cfsx does not follow ({type(link).__name__})")
        return group, None

    def dataset(self, file, name: str, shown: str = "", depth: int = 0):
        """The dataset at ``name``, opened so that its virtual sources and external raw data are looked for in
        the folder, after checking that every one of them is a file in the folder or its subfolders."""
        import h5py

        shown = shown or name
        found = self.locate(file, name, shown)
        if found is None or found[1] is None or found[0].get(found[1], getclass=True) is not h5py.Dataset:
            raise DataError(f"{file.filename} has no dataset {name}")
        group, part = found
        access = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
        access.set_efile_prefix(str(self.folder).encode())
        access.set_virtual_prefix(str(self.folder).encode())
        dataset = h5py.Dataset(h5py.h5d.open(group.id, part.encode(), dapl=access))
        for filename, *_ in dataset.external or ():
            self._beside(filename, "external data file", shown)
        if dataset.is_virtual:
            if depth >= MAX_HDF5_LINKS:
                raise DataError(f"{self.path}::{shown}: virtual datasets nested more than {MAX_HDF5_LINKS} deep")
            for source in dataset.virtual_sources():
                if source.file_name == ".":
                    source_file = group.file
                else:
                    source_file = self._open(self._beside(source.file_name, "virtual dataset source", shown))
                self.dataset(source_file, source.dset_name, shown, depth + 1)
        return dataset

    def _open(self, path: Path):
        """An HDF5 file of the folder, opened once."""
        import h5py

        if path not in self.opened:
            self.opened[path] = self.files.enter_context(h5py.File(path, "r"))
        return self.opened[path]

    def _beside(self, filename: str, what: str, name: str) -> Path:
        """The file a link names (relative names: from the folder), if it is a file in the folder or a subfolder
        of it once symbolic links and '..' are resolved."""
        target = Path(filename)
        target = (target if target.is_absolute() else self.folder / target).resolve()
        if not target.is_relative_to(self.folder):
            raise DataError(
                f"{self.path}::{name}: its {what} points to {filename}, outside the folder of {self.path.name} "
                "(and its subfolders); cfsx follows links only to files in that folder and below it"
            )
        if not target.is_file():
            raise DataError(f"{self.path}::{name}: its {what} points to {filename}, which does not exist")
        return target


def _hdf5_parts(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]


def _text(value: Any) -> str:
    """An HDF5 string attribute, stored as bytes or as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
