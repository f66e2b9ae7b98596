"""Reading measured images: .npy, TIFF, PNG, HDF5/NeXus (with the links detector files use) and the formats
fabio reads, each checked into one 2-D floating-point image with one clear error for anything else."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

MAX_HDF5_LINKS = 32  # soft and external links followed for one HDF5 path (more: a cycle)


def as_image(array: Any, source: str = "") -> np.ndarray:
    """A 2-D floating-point image of a real numeric array (bool, integers, floats), with one clear error,
    naming ``source`` when given, for anything else (complex, strings, objects, records, dates).

    float32 where that holds every value exactly (8- and 16-bit integers, bool, float16, float32), else
    float64, in C order; the array itself (not a copy) when it already is one, so large images are not copied.
    """
    where = f"{source}: " if source else ""
    try:
        array = np.asarray(array)
    except (TypeError, ValueError):
        raise DataError(f"{where}not a numeric image ({type(array).__name__})") from None
    if array.dtype.kind == "c":
        raise DataError(
            f"{where}the image is complex-valued (dtype {array.dtype}); save its magnitude or real part instead"
        )
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}not a numeric image (dtype {array.dtype})")
    dtype = np.float32 if np.can_cast(array.dtype, np.float32) else np.float64
    image = np.ascontiguousarray(np.squeeze(array.astype(dtype, copy=False)))
    if image.ndim != 2 or min(image.shape) < 2:
        raise DataError(f"{where}an image must be 2-D with at least 2 x 2 pixels, got shape {array.shape}")
    return image


MANTID_SIGNAL = "MDHistoWorkspace/data/signal"


def read_image(spec: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one image: .npy, TIFF, PNG, HDF5/NeXus (``file.h5::/path``, or the Mantid MDHisto layout),
    or any detector format that fabio reads (CBF, EDF, ...). Returns the image and what was read."""
    path_text, _, inner = spec.partition("::")
    path = Path(path_text)
    if not path.is_file():
        raise DataError(f"no such image file: {path}")
    suffix = path.suffix.lower()
    info: dict[str, Any] = {"source": str(path)}
    silenced = logging.root.manager.disable
    logging.disable(max(silenced, logging.WARNING))  # tifffile and imageio log what they then raise: the error says it
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        elif suffix == ".png":
            import imageio.v3 as imageio

            array = imageio.imread(path)
            if array.ndim == 3:  # colour PNG: its luminance
                array = array[..., :3].mean(axis=-1)
        elif suffix in (".h5", ".hdf5", ".nxs", ".nx5", ".hdf"):
            array, info = _read_hdf5(path, inner, info)
        else:
            array = _read_fabio(path)
    except DataError:
        raise
    except Exception as error:  # every reader has its own exception types for a damaged file
        raise DataError(f"cannot read {path} as an image: {error}") from None
    finally:
        logging.disable(silenced)
    return as_image(array, source=spec), info


def _read_hdf5(path: Path, inner: str, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    import contextlib

    import h5py

    with contextlib.ExitStack() as files:
        links = _Hdf5Links(path, files)
        file = files.enter_context(h5py.File(path, "r"))
        name = inner or (MANTID_SIGNAL if links.locate(file, MANTID_SIGNAL) is not None else "")
        if not name:
            raise DataError(f"{path}: give the dataset path as {path}::/path/to/data")
        info["dataset"] = name
        array = links.dataset(file, name)[()]
        if name == MANTID_SIGNAL:
            # Bin edges of the two axes; the signal is stored (Q2, Q1): rows along Q2.
            axes = [links.dataset(file, "MDHistoWorkspace/data/Q2"), links.dataset(file, "MDHistoWorkspace/data/Q1")]
            info["axes"] = {
                "rows": [float(axes[0][0]), float(axes[0][-1])],
                "columns": [float(axes[1][0]), float(axes[1][-1])],
                "names": [_text(axis.attrs.get("long_name", axis.name)) for axis in axes],
                "rlu": all(_text(axis.attrs.get("frame", "")) == "HKL" for axis in axes),
            }
    return array, info


class _Hdf5Links:
    """Resolves HDF5 paths of one file: soft links anywhere, but external links, virtual-dataset sources and
    external raw-data files only to files in the same folder as that file (the layout of detector master
    files); anything else is refused with one DataError. Files it opens are closed with ``files``."""

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
        the folder, after checking that every one of them is a file in the folder."""
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
        """The file a link names (relative names: in the folder), if it is a file in the folder."""
        target = Path(filename)
        target = (target if target.is_absolute() else self.folder / target).resolve()
        if target.parent != self.folder:
            raise DataError(
                f"{self.path}::{name}: its {what} points to {filename}, outside the folder of {self.path.name}; "
                "cfsx follows links only to files in the same folder"
            )
        if not target.is_file():
            raise DataError(f"{self.path}::{name}: its {what} points to {filename}, which does not exist")
        return target


def _hdf5_parts(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]


def _text(value: Any) -> str:
    """An HDF5 string attribute, stored as bytes or as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read_fabio(path) -> np.ndarray:
    import fabio

    return fabio.open(str(path)).data


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, directories (their image files, sorted) and glob patterns -> image specs."""
    import glob
    from pathlib import Path

    image_suffixes = {".npy", ".tif", ".tiff", ".png", ".h5", ".hdf5", ".nxs", ".cbf", ".edf", ".img", ".mccd"}
    specs: list[str] = []
    for item in inputs:
        path = Path(item.partition("::")[0])
        if path.is_dir():
            specs += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in image_suffixes)
        elif any(char in item for char in "*?[") and not path.exists():
            specs += sorted(glob.glob(item))
        else:
            specs.append(item)
    if not specs:
        raise DataError(f"no image files found in {' '.join(inputs)}")
    return specs
