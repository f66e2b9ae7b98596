"""Reading measured images: .npy, TIFF, PNG, HDF5/NeXus (with the links detector files use, the NeXus
``default``/``signal`` chain and the compression filters of hdf5plugin) and the formats fabio reads, each
checked into one 2-D floating-point image with one clear error for anything else.

A spec is ``FILE``, ``FILE::/path/in/hdf5``, either followed by a frame selection of a 3-D stack:
``[3]`` (frame 3) or ``[a:b]`` (the sum of frames a to b - 1; ``[:]`` all), or by a plane selection of a
3-D reciprocal-space volume (NeXus NXdata or Mantid MDHisto with h, k, l axes in r.l.u.): ``[l=0]`` (the
slice nearest l = 0) or ``[l=0+-0.05]`` (the sum of the slices whose bin centres lie within 0 +- 0.05).
A volume is read slice by slice, never whole. ``select_frames`` turns ``--frames a:b`` and
``--sum-frames`` into such specs, ``select_plane`` ``--plane l=0``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.errors import AdvisedError, DataError, TooLargeError
from cfsx.io.hdf5_images import VolumeAxes, hdf5_dataset


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
    if image.ndim == 3:
        raise AdvisedError(
            f"{where}a stack of {image.shape[0]} frames or a volume: choose {{advice}}",
            [("spec.frames", "FILE[3]", "a:b", "frames"), ("spec.sum", "FILE[a:b]", "", "their sum"),
             ("spec.plane", "FILE[l=0]", "l=0", "a plane of a volume with h, k, l axes")],
        )  # fmt: skip
    if image.ndim != 2 or min(image.shape) < 2:
        raise DataError(f"{where}an image must be 2-D with at least 2 x 2 pixels, got shape {array.shape}")
    return image


SELECTION = re.compile(r"\[(-?\d*)(:?)(-?\d*)\]$")  # [i] or [a:b] at the end of a spec


PLANE_SELECTION = re.compile(r"\[([^\[\]=]*=[^\[\]]*)\]$")  # [l=0] or [l=0+-0.05] at the end of a spec


PLANE_FORM = "AXIS=VALUE or AXIS=VALUE+-HALFWIDTH with AXIS h, k or l (l=0, l=0.5+-0.05)"


HDF5_SUFFIXES = (".h5", ".hdf5", ".nxs", ".nx5", ".hdf")


@dataclass(frozen=True)
class Plane:
    """A plane of a 3-D volume: the slice nearest ``axis`` = ``value`` (``thickness`` 0), or the sum of the
    slices whose bin centres lie within ``value`` +- ``thickness``; ``axis`` is "h", "k" or "l"."""

    axis: str
    value: float
    thickness: float = 0.0

    def __str__(self) -> str:
        width = f"+-{self.thickness:.15g}" if self.thickness else ""
        return f"{self.axis}={self.value:.15g}{width}"


def parse_plane(text: str, source: str = "") -> Plane:
    """'l=0' -> Plane('l', 0.0); 'L = -1 +- 0.1' -> Plane('l', -1.0, 0.1); anything else one DataError
    naming ``source`` (the spec or option it came from)."""
    where = source or repr(text)
    axis, equals, rest = text.partition("=")
    value, plus_minus, width = rest.partition("+-")
    axis = axis.strip().lower()
    try:
        numbers = [float(value), float(width) if plus_minus else 0.0]
    except ValueError:
        numbers = []
    if not equals or axis not in ("h", "k", "l") or not numbers or not np.all(np.isfinite(numbers)):
        raise DataError(f"{where}: a plane is {PLANE_FORM}, got {text!r}")
    if numbers[1] < 0:
        raise DataError(f"{where}: the half-width of a plane must not be negative, got {text!r}")
    return Plane(axis, numbers[0], numbers[1])


def split_selection(spec: str) -> tuple[str, slice | int | Plane | None]:
    """'plane.h5::/data[3]' -> ('plane.h5::/data', 3); '...[2:5]' -> (..., slice(2, 5)); 'volume.nxs[l=0]'
    -> ('volume.nxs', Plane('l', 0.0)); else (spec, None). A bracket is a selection only after an HDF5 path
    or when the file without it exists; a plane selection that does not parse is one DataError."""
    found = SELECTION.search(spec) or PLANE_SELECTION.search(spec)
    if found is None or found.group(0) == "[]":
        return spec, None
    rest = spec[: found.start()]
    if "::" not in rest and not Path(rest).is_file():
        return spec, None
    if found.re is PLANE_SELECTION:
        return rest, parse_plane(found.group(1), spec)
    first, colon, last = found.groups()
    if not colon:
        return rest, int(first)
    return rest, slice(int(first) if first else None, int(last) if last else None)


def select_frames(specs: list[str], frames: str | None, sum_frames: bool) -> list[str]:
    """``--frames a:b`` (each frame of every stack an image) and ``--sum-frames`` (their sum one image) as specs.

    ``frames`` is 'a:b' (either end may be left out) or 'i'; specs that already select frames keep theirs.
    """
    if frames is None and not sum_frames:
        return specs
    chosen = slice(None)
    if frames is not None:
        found = SELECTION.fullmatch(f"[{frames}]")
        if found is None or not frames.strip():
            raise DataError(f"--frames must be a frame i or a range a:b (either end may be left out), got {frames!r}")
        chosen = split_selection(f"x::[{frames}]")[1]
        chosen = chosen if isinstance(chosen, slice) else slice(chosen, chosen + 1 if chosen != -1 else None)
    text = f"[{'' if chosen.start is None else chosen.start}:{'' if chosen.stop is None else chosen.stop}]"
    selected = []
    for spec in specs:
        if split_selection(spec)[1] is not None:
            selected.append(spec)
        elif sum_frames:
            selected.append(spec + text)
        else:
            with _opened(spec) as (array, _, _):
                count = array.shape[0] if len(array.shape) == 3 else None
            if count is None:
                raise DataError(f"{spec} is not a stack of frames (shape {array.shape}): --frames is for 3-D data")
            indices = range(*chosen.indices(count))
            if not indices:
                raise DataError(f"{spec}: --frames {frames} selects none of its {count} frames (0 to {count - 1})")
            selected += [f"{spec}[{index}]" for index in indices]
    return selected


def select_plane(specs: list[str], plane: str | None) -> list[str]:
    """``--plane l=0`` (or ``l=0+-0.05``) as the plane selection of every spec that has no selection yet."""
    if plane is None:
        return specs
    chosen = parse_plane(plane, "--plane")
    return [spec if split_selection(spec)[1] is not None else f"{spec}[{chosen}]" for spec in specs]


def read_image(spec: str, max_pixels: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one image: .npy, TIFF, PNG, HDF5/NeXus (``file.h5::/path``, the path a dataset or an NXdata group;
    without a path the NeXus default plottable data or the Mantid MDHisto layout), or any detector format
    that fabio reads (CBF, EDF, ...), with an optional frame or plane selection (module docstring). Returns
    the image and what was read. ``max_pixels``: refuse (TooLargeError) what would read more pixels, counted from
    the file's header before any pixel is read (where the format says; else right after reading)."""
    base, selection = split_selection(spec)
    with _opened(base) as (array, info, volume):
        _check_size(array.shape, selection, max_pixels, spec)
        if isinstance(selection, Plane):
            array = _plane(array, volume, selection, spec, info)
        elif selection is not None:
            array = _frames(array, selection, spec, info)
        image = as_image(array[()] if not isinstance(array, np.ndarray) else array, source=spec)
    return image, info


def _check_size(shape: tuple[int, ...] | None, selection: Any, max_pixels: int | None, spec: str) -> None:
    """Refuse data whose part to be read holds more than ``max_pixels`` values (``shape`` None: not known yet)."""
    if max_pixels is None or shape is None:
        return
    shape = tuple(int(size) for size in shape)
    if selection is None or len(shape) != 3:
        reading = int(np.prod(shape, dtype=np.float64))
    else:  # a frame, a sum of frames read one by one, or a plane: one 2-D slice at a time
        reading = max(shape[0] * shape[1], shape[1] * shape[2], shape[0] * shape[2])
    if reading > max_pixels:
        raise TooLargeError(f"{spec} holds {reading} pixels ({' x '.join(map(str, shape))}); the limit is {max_pixels}")


class _Deferred:
    """Data read only when first indexed; its shape comes from the file's header."""

    def __init__(self, shape: tuple[int, ...], read) -> None:
        self.shape, self.ndim, self._read, self._data = tuple(shape), len(shape), read, None

    def __getitem__(self, key):
        if self._data is None:
            self._data = np.asarray(self._read())
        return self._data[key]


def _frames(array: Any, selection: slice | int, spec: str, info: dict[str, Any]) -> np.ndarray:
    """Frame ``selection`` of a 3-D stack, or the sum of a range of frames (read one at a time)."""
    shape = array.shape
    if len(shape) != 3:
        raise DataError(f"{spec}: a frame selection needs a 3-D stack, the data has shape {tuple(shape)}")
    count = shape[0]
    if isinstance(selection, int):
        if not -count <= selection < count:
            raise DataError(f"{spec}: no frame {selection} in a stack of {count}")
        info["frame"] = selection % count
        return np.asarray(array[selection % count])
    indices = range(*selection.indices(count))
    if not indices:
        raise DataError(f"{spec}: the range selects none of the {count} frames")
    total = np.zeros(shape[1:], dtype=np.float64)
    for index in indices:
        total += np.asarray(array[index], dtype=np.float64)
    info["frames_summed"] = [indices.start, indices.stop, indices.step]
    return total


def _plane(array: Any, volume: VolumeAxes | None, plane: Plane, spec: str, info: dict[str, Any]) -> np.ndarray:
    """The ``plane`` of a 3-D volume, read slice by slice (a thick plane summed into float64), with the r.l.u.
    axes of its rows and columns and the plane itself in ``info["axes"]``."""
    shape = tuple(array.shape)
    if len(shape) != 3:
        raise DataError(f"{spec}: a plane selection needs a 3-D volume over h, k, l, the data has shape {shape}")
    if volume is None:
        raise DataError(
            f"{spec}: a plane selection needs h, k, l axes in r.l.u. (a NeXus NXdata or a Mantid MDHisto "
            "volume); this data has none: choose frames with [i] or [a:b] instead"
        )
    axes = volume()
    matching = [number for number, axis in enumerate(axes) if axis.letter == plane.axis]
    if len(matching) != 1:
        names = ", ".join(axis.name for axis in axes)
        count = "no" if not matching else "more than one"
        raise DataError(f"{spec}: {count} {plane.axis} axis among the volume's axes ({names})")
    along = matching[0]
    axis = axes[along]
    low, high = sorted((float(axis.edges[0]), float(axis.edges[-1])))
    if not low <= plane.value <= high:
        raise DataError(
            f"{spec}: {plane.axis} = {plane.value:g} is outside the volume, whose {plane.axis} runs from {low:g} "
            f"to {high:g} ({axis.name})"
        )
    distance = np.abs(axis.centres - plane.value)
    if plane.thickness == 0:
        first = int(np.argmin(distance))
        indices, value = range(first, first + 1), float(axis.centres[first])
    else:
        tolerance = 1e-9 * max(abs(plane.value), plane.thickness, 1.0)  # centres of linspace are not exact
        inside = np.flatnonzero(distance <= plane.thickness + tolerance)
        if not len(inside):
            step = abs(float(axis.centres[1] - axis.centres[0])) if len(axis.centres) > 1 else 0.0
            raise DataError(
                f"{spec}: no {plane.axis} slice has its centre within {plane.value:g} +- {plane.thickness:g} "
                f"(the slices are {step:g} apart): widen the half-width or leave it out for the nearest slice"
            )
        indices, value = range(int(inside[0]), int(inside[-1]) + 1), plane.value

    def piece(index: int) -> np.ndarray:
        key: list[Any] = [slice(None)] * 3
        key[along] = index
        return np.asarray(array[tuple(key)])

    if len(indices) == 1:
        image = piece(indices.start)
    else:
        image = np.zeros([size for number, size in enumerate(shape) if number != along], dtype=np.float64)
        for index in indices:
            image += piece(index).astype(np.float64, copy=False)
    rows, columns = (axes[number] for number in range(3) if number != along)
    info["axes"] = {
        "rows": [float(rows.edges[0]), float(rows.edges[-1])],
        "columns": [float(columns.edges[0]), float(columns.edges[-1])],
        "names": [rows.name, columns.name],
        "rlu": True,
        "plane": {
            "axis": plane.axis,
            "value": value,
            "requested": plane.value,
            "thickness": plane.thickness,
            "slices": [indices.start, indices.stop],
        },
    }
    return image


@contextlib.contextmanager
def _opened(spec: str) -> Iterator[tuple[Any, dict[str, Any], VolumeAxes | None]]:
    """The array a spec names, lazily where the format allows (HDF5 datasets, .npy memory maps), what was read,
    and for a 3-D HDF5 volume with named axes a function giving them (None for other data)."""
    path_text, _, inner = spec.partition("::")
    path = Path(path_text)
    if not path.is_file():
        raise DataError(f"no such image file: {path}")
    suffix = path.suffix.lower()
    info: dict[str, Any] = {"source": str(path)}
    volume: VolumeAxes | None = None
    silenced = logging.root.manager.disable
    logging.disable(max(silenced, logging.ERROR))  # the readers log what they then raise: the error says it
    try:
        with contextlib.ExitStack() as files:
            if suffix == ".npy":
                array = np.load(path, allow_pickle=False, mmap_mode="r")
            elif suffix in (".tif", ".tiff"):
                array = _tiff(path, files)
            elif suffix == ".png":
                array = _png(path)
            elif suffix in HDF5_SUFFIXES:
                array, volume = hdf5_dataset(path, inner, info, files)
            else:
                array = _read_fabio(path)
            yield array, info, volume
    except (DataError, GeneratorExit):
        raise
    except Exception as error:  # every reader has its own exception types for a damaged file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot read {path} as an image: {reason}") from None
    finally:
        logging.disable(silenced)


def _tiff(path: Path, files: contextlib.ExitStack) -> _Deferred:
    """A TIFF's first series, unread; a colour one (samples per pixel: RGB) as its luminance, not as frames."""
    import tifffile

    series = files.enter_context(tifffile.TiffFile(path)).series[0]
    colour = series.axes.find("S")
    if colour < 0:
        return _Deferred(series.shape, series.asarray)
    shape = tuple(size for number, size in enumerate(series.shape) if number != colour)
    return _Deferred(shape, lambda: np.take(series.asarray(), range(min(3, series.shape[colour])), colour).mean(colour))


def _png(path: Path) -> _Deferred:
    """A PNG, unread (its size from the header); a colour one as its luminance."""
    import imageio.v3 as imageio
    from PIL import Image

    try:
        with Image.open(path) as header:
            width, height = header.size
    except Image.DecompressionBombError as bomb:  # far beyond any detector: Pillow refuses to open it at all
        raise TooLargeError(f"{path} declares too many pixels ({bomb})") from None

    def read() -> np.ndarray:
        array = imageio.imread(path)
        return array[..., :3].mean(axis=-1) if array.ndim == 3 else array  # colour PNG: its luminance

    return _Deferred((height, width), read)


def _read_fabio(path) -> Any:
    """A detector image fabio reads: its size from the header where the format gives it (EDF, CBF), a file shorter
    than its header says refused."""
    import fabio

    header = fabio.openheader(str(path)).header
    dims = [header.get(key) for key in ("Dim_2", "Dim_1")] if "Dim_1" in header else [
        header.get("X-Binary-Size-Second-Dimension"), header.get("X-Binary-Size-Fastest-Dimension")]  # fmt: skip
    shape = tuple(int(str(size).split()[0]) for size in dims) if all(dims) else None

    def read() -> np.ndarray:
        image = fabio.open(str(path))
        declared = header.get("EDF_BinarySize") or header.get("Size")
        if declared and str(declared).isdigit() and int(declared) > path.stat().st_size:
            raise DataError(f"{path} is truncated: its header declares {declared} bytes of data, the file is shorter")
        return image.data

    return _Deferred(shape, read) if shape else read()


def file_of(spec: str) -> str:
    """The file a spec reads: 'dir/plane.h5::/entry/data[3]' -> 'dir/plane.h5'."""
    return split_selection(spec)[0].partition("::")[0]


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, directories (their image files, sorted) and glob patterns -> image specs."""
    import glob

    image_suffixes = {".npy", ".tif", ".tiff", ".png", ".h5", ".hdf5", ".nxs", ".cbf", ".edf", ".img", ".mccd"}
    specs: list[str] = []
    for item in inputs:
        path = Path(item.partition("::")[0])
        if split_selection(item)[1] is not None:
            specs.append(item)
        elif path.is_dir():
            specs += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in image_suffixes)
        elif any(char in item for char in "*?[") and not path.exists():
            specs += sorted(glob.glob(item))
        else:
            specs.append(item)
    if not specs:
        raise DataError(f"no image files found in {' '.join(inputs)}" if inputs else "no image files given")
    return specs


def short_name(source: str) -> str:
    """'dir/data.h5::/images[3]' -> 'data.h5[3]'; 'dir/plane.tif' -> 'plane.tif'."""
    path, _, inner = source.partition("::")
    name = Path(path).name
    return name + inner[len("/images") :] if inner.startswith("/images[") else name
