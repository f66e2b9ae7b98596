"""NeXus views of cfsx's HDF5 files, so that nexusformat, silx or h5web show a picture in h and k.

Every file cfsx writes (simulate, correct, interpret's results.h5, a knowledge store) keeps its arrays where
format 1 put them (/images, /encodings/achieved, ...) and gains, from format 2 on::

    /                 NXroot, default = "entry"
    /entry            NXentry, default = "data", title
    /entry/data       NXdata: signal = "images", axes = [".", "h", "k"]; images is a hard link to /images
    /entry/data/h, k  the grid in reciprocal lattice units (r.l.u.)
    /entry/process    NXprocess: program, version; config, an NXnote with the resolved YAML

Hard links make /images and /entry/data/images one dataset: either path reads and grows the same array.
Arrays carry a ``long_name`` (and ``units`` where they have one) that says what they hold.
"""

from __future__ import annotations

import re
from typing import Any

import h5py

from cfsx import __version__
from cfsx.physics.engine import reciprocal_grid

# Meanings of the arrays cfsx writes (docs/format.md); attached to each one present.
MEANINGS = {
    "images": "intensity per lattice site (simulated) or normalised intensity (corrected), on the h, k grid",
    "observed": "the image interpreted, on the model's h, k grid",
    "masks": "0 measured, 1 filled by symmetry, 2 inpainted",
    "encodings/achieved": "alpha(dx, dy) reached by the structure: the training labels",
    "encodings/target": "alpha(dx, dy) given to the feedback loop",
    "interactions": "final couplings J(dx, dy) in units of kT",
    "lattices": "occupancies s[x, y] in {0, 1}",
    "seeds": "per-sample seed: regenerates the sample exactly",
    "cycles": "feedback cycles used",
    "stop_reasons": "why the feedback stopped: 0 reached, 1 stalled, 2 max_cycles",
    "encodings/final": "alpha(dx, dy): the final answer per image",
    "encodings/cnn": "alpha(dx, dy) from the CNN",
    "encodings/least_squares": "alpha(dx, dy) from the Warren-Cowley least squares",
    "encodings/blend": "alpha(dx, dy): the blend of CNN and least squares (hybrid models)",
    "encodings/refined": "alpha(dx, dy) after refinement",
}
RLU = "r.l.u."


def add_view(file: h5py.File, *, signal: str, h_max: float, title: str, config_text: str | None = None) -> None:
    """Give ``file`` its NeXus entry: NXdata over the existing (S, M, M) array ``signal`` with h and k axes."""
    images = file[signal]
    axis = reciprocal_grid(images.shape[-1], h_max)
    file.attrs.update(NX_class="NXroot", default="entry")
    entry = file.require_group("entry")
    entry.attrs.update(NX_class="NXentry", default="data")
    entry["title"] = title
    data = entry.require_group("data")
    data.attrs.update(NX_class="NXdata", signal="images", axes=[".", "h", "k"], h_indices=1, k_indices=2)
    data["images"] = images  # a hard link: one dataset, two paths
    for name, label in (("h", "h (r.l.u.), image axis 0"), ("k", "k (r.l.u.), image axis 1")):
        data.create_dataset(name, data=axis)
        data[name].attrs.update(units=RLU, long_name=label)
    process = entry.require_group("process")
    process.attrs["NX_class"] = "NXprocess"
    process["program"] = "cfsx"
    process["version"] = __version__
    if config_text:
        note = process.require_group("config")
        note.attrs["NX_class"] = "NXnote"
        note["type"] = "text/yaml"
        note["data"] = config_text
    describe(file)


def describe(file: h5py.File) -> None:
    """Attach the meaning of every known array present in ``file`` (``long_name``)."""
    for name, meaning in MEANINGS.items():
        if name in file:
            file[name].attrs["long_name"] = meaning


def h_max_of(attrs: dict[str, Any]) -> float:
    """The grid's h_max from a file's root attributes: its own, or its simulation config's."""
    if "h_max" in attrs:
        return float(attrs["h_max"])
    from cfsx.config import config_from_yaml_text

    return float(config_from_yaml_text(str(attrs["config"])).diffraction.h_max)


def add_window_axes(data: h5py.Group, windows: list[dict[str, Any] | None], image_size: int, h_max: float) -> None:
    """The window's coordinates in the file's own axes (e.g. L and H in r.l.u.) as auxiliary NXdata axes of ``data``,
    when every image shares one calibrated window (the ``window`` of the correction's resample step) whose lattice
    basis runs along the file's axes."""

    first = windows[0] if windows else None
    if first is None or any(window != first for window in windows) or not first.get("axes"):
        return
    (a, b), (c, d) = first["basis"]
    if b != 0 or c != 0:  # an oblique basis: the window's axes are not the file's
        return
    grid = reciprocal_grid(image_size, h_max)
    names = [short_axis_name(name) for name in first["axes"]]
    if len(set(names)) != 2 or {"h", "k"} & set(names):  # would clash with the model's h and k
        names = [f"{name}_file" for name in names]
    for index, (name, step, centre) in enumerate(zip(names, (a, d), first["centre"], strict=True)):
        data.create_dataset(name, data=centre + step * grid)
        data[name].attrs.update(units=RLU, long_name=f"{first['axes'][index]} (r.l.u. of the crystal's cell), "
                                f"image axis {index + 1}")  # fmt: skip
        data.attrs[f"{name}_indices"] = index + 1
    data.attrs["auxiliary_axes"] = names


LETTERS = ("h", "k", "l")


def axis_letter(name: str) -> str | None:
    """The crystal axis an axis name runs along: 'H', 'Qh', '[0,0,L]', 'k (r.l.u.)' -> h, h, l, k; else None."""
    text = name.strip().lower()
    text = re.sub(r"\s*\(.*\)$", "", text)  # a trailing unit: 'k (r.l.u.)'
    if text in LETTERS:
        return text
    if len(text) == 2 and text[0] == "q" and text[1] in LETTERS:
        return text[1]
    found = re.fullmatch(r"\[([^,\]]*),([^,\]]*),([^,\]]*)\]", text.replace(" ", ""))
    if found:
        parts = found.groups()
        named = [index for index, part in enumerate(parts) if part not in ("0", "0.0", "")]
        if len(named) == 1 and parts[named[0]] == LETTERS[named[0]]:
            return LETTERS[named[0]]
    return None


def short_axis_name(name: str) -> str:
    """'[0,0,L]' -> 'L', 'Qh' -> 'H' (a crystal axis's letter, upper case), else the name itself."""
    letter = axis_letter(name)
    return letter.upper() if letter else name
