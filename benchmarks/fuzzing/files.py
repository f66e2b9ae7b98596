"""Making the files of a fuzz case from its recipes (arrays, images, HDF5 and .keras variants), and describing them."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np


def make_array(recipe: dict) -> np.ndarray:
    if "npy_hex" in recipe:
        return np.load(io.BytesIO(bytes.fromhex(recipe["npy_hex"])), allow_pickle=False)
    rng = np.random.default_rng(recipe["seed"])
    shape = tuple(recipe["shape"])
    size = int(np.prod(shape)) if shape else 1
    fill = recipe["fill"]
    dtype = recipe["dtype"]
    if fill == "bits" and dtype not in ("object", "U5", "f4,i4"):
        itemsize = np.dtype(dtype).itemsize
        return rng.integers(0, 256, size * itemsize, dtype=np.uint8).view(np.dtype(dtype)).reshape(shape).copy()
    base = {
        "uniform": lambda: rng.uniform(0.5, 1.5, shape),
        "zeros": lambda: np.zeros(shape),
        "const": lambda: np.full(shape, float(recipe["const"])),
        "normal": lambda: rng.normal(0.0, 1.0, shape),
        "ramp": lambda: np.arange(size, dtype=np.float64).reshape(shape),
        "peaks": lambda: rng.uniform(0.5, 1.5, shape) + 1e6 * (rng.uniform(size=shape) > 0.995),
        "tiny": lambda: rng.uniform(0.5, 1.5, shape) * 1e-300,
        "huge": lambda: rng.uniform(0.5, 1.5, shape) * 1e300,
        "bits": lambda: rng.uniform(0.5, 1.5, shape),
        "checker": lambda: (np.indices(shape).sum(axis=0) % 2).astype(np.float64) if shape else np.zeros(()),
    }[fill]()
    base = np.asarray(base, dtype=np.float64)
    chosen = rng.uniform(size=shape) < recipe["fraction"]
    special = recipe["special"]
    if special != "none":
        base = np.where(chosen, {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "negative": -1.0, "zero": 0.0}[special],
                        base)  # fmt: skip
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype == "object":
            return base.astype(object)
        if dtype == "U5":
            return base.astype("U5")
        if dtype.startswith("datetime64"):
            return np.nan_to_num(base).astype(np.int64).astype(dtype)
        if dtype == "f4,i4":
            out = np.zeros(shape, dtype="f4,i4")
            out["f0"] = base
            return out
        if np.dtype(dtype).kind == "c":
            return (base + 1j * base[::-1] if base.ndim else base + 0j).astype(dtype)
        if np.dtype(dtype).kind == "b":
            return base > 1.0
        if np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            return np.clip(np.nan_to_num(base * (100 if fill == "uniform" else 1)), info.min, info.max).astype(dtype)
        return base.astype(dtype)


def write_image(path: Path, fmt: str, array: np.ndarray) -> str:
    """Write ``array`` as ``fmt``; when the writer refuses the array, the .npy bytes go under that name."""
    try:
        if fmt == "npy":
            with open(path, "wb") as file:
                np.save(file, array)
        elif fmt == "tif":
            import tifffile

            tifffile.imwrite(path, array)
        elif fmt == "png":
            import imageio.v3 as imageio

            picture = array
            if picture.dtype.kind not in "u" or picture.dtype.itemsize > 2:
                with np.errstate(all="ignore"):
                    picture = np.clip(np.nan_to_num(np.real(picture).astype(np.float64)), 0, 65535).astype(np.uint16)
            imageio.imwrite(path, picture, extension=".png")
        elif fmt == "edf":
            import fabio.edfimage

            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # 1-D data
                fabio.edfimage.EdfImage(data=array).write(str(path))
        elif fmt == "h5":
            import h5py

            with h5py.File(path, "w") as file:
                file.create_dataset("entry/data", data=array)
        return ""
    except Exception as error:
        path.unlink(missing_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        path.write_bytes(buffer.getvalue())
        return f" (the {fmt} writer refused it: {type(error).__name__}; .npy bytes written instead)"


def _py_value(text: str):
    """An attribute value from its Python text (the recipes are JSON: they hold the text)."""
    if text == "2**63":
        return 2**63
    if text == "float('nan')":
        return float("nan")
    import ast

    return ast.literal_eval(text)


def make_h5(path: Path, recipe: dict, shared: Path) -> None:
    import h5py

    mod = recipe["mod"]
    source = shared / recipe["src"].removeprefix("@S/")
    if mod == "empty":
        h5py.File(path, "w").close()
        return
    if mod == "foreign":
        with h5py.File(path, "w") as file:
            file.create_dataset("entry/data", data=np.ones((4, 16, 16)))
            file.attrs["NX_class"] = "NXroot"
        return
    if mod == "format-only":
        with h5py.File(path, "w") as file:
            file.attrs["format"] = "cfsx-dataset"
            file.attrs["format_version"] = 1
        return
    shutil.copyfile(source, path)
    with h5py.File(path, "a") as file:
        name = recipe.get("array", "images")
        present = name in file
        old = file[name] if present and isinstance(file[name], h5py.Dataset) else None
        length = old.shape[0] if old is not None and old.ndim else 4
        if mod == "version":
            file.attrs["format_version"] = 2
        elif mod == "format":
            file.attrs["format"] = "cfsx-datasetX"
        elif mod == "delete" and present:
            del file[name]
        elif mod == "resize" and old is not None:
            data = old[()]
            n = recipe["length"]
            if n <= len(data):
                data = data[:n]
            else:
                data = np.concatenate([data] * (n // max(len(data), 1) + 1))[:n] if len(data) else data
            del file[name]
            if n > 1000:  # declared, not written: a large array costs nothing on disk
                file.create_dataset(name, shape=(n, *old.shape[1:]), dtype=old.dtype, chunks=True)
            else:
                file.create_dataset(name, data=data)
        elif mod == "dtype" and old is not None:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = old[()]
                dtype = recipe["dtype"]
                if dtype == "f4,i4":
                    converted = np.zeros(data.shape, dtype="f4,i4")
                else:
                    converted = data.astype(dtype) if data.dtype.kind not in "OSU" else np.zeros(data.shape, dtype)
            del file[name]
            file.create_dataset(name, data=converted)
        elif mod == "shape" and old is not None:
            shape = (length, *recipe["shape"])
            del file[name]
            if int(np.prod(shape)) > 10**6:
                file.create_dataset(name, shape=shape, dtype=np.float32, chunks=True)
            else:
                file.create_dataset(name, data=np.ones(shape, np.float32))
        elif mod == "values" and old is not None and old.dtype.kind == "f":
            data = old[()]
            data.flat[:: max(1, data.size // 7)] = float(recipe["value"])
            old[...] = data
        elif mod == "group" and present:
            del file[name]
            file.create_group(name)
        elif mod == "scalar" and present:
            del file[name]
            file.create_dataset(name, data=1.0)
        elif mod == "attr":
            file.attrs[recipe["attr"]] = _py_value(recipe["value"])
        elif mod == "delattr" and recipe["attr"] in file.attrs:
            del file.attrs[recipe["attr"]]
        elif mod == "external" and present:
            del file[name]
            file[name] = h5py.ExternalLink("missing-file.h5", "/images")
        elif mod == "softlink" and present:
            del file[name]
            file[name] = h5py.SoftLink(f"/{name}")
        elif mod in ("huge", "zero"):
            for array in list(file):
                for item in [array] + ([f"{array}/{k}" for k in file[array]] if isinstance(file[array], h5py.Group)
                                       else []):  # fmt: skip
                    node = file[item]
                    if isinstance(node, h5py.Dataset) and node.ndim:
                        shape, dtype = node.shape, node.dtype
                        del file[item]
                        n = 10**8 if mod == "huge" else 0
                        file.create_dataset(item, shape=(n, *shape[1:]), dtype=dtype,
                                            chunks=(1, *shape[1:]) if n else None)  # fmt: skip


def make_keras(path: Path, recipe: dict, shared: Path) -> None:
    source = shared / recipe["src"].removeprefix("@S/")
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    mod = recipe["mod"]
    if mod == "meta":
        document = json.loads(entries["cfsx_metadata.json"])
        key, value = recipe["key"], recipe["value"]
        if key.startswith("DELETE:"):
            document.pop(key[7:], None)
        elif key == "cfs+vectors":
            document["cfs"], document["vectors"] = 3, [[0, 1]] * 8
        elif key == "image_size+":
            document["image_size"] = 32
        elif "." in key:
            outer, inner = key.split(".")
            if isinstance(document.get(outer), dict):
                document[outer][inner] = value
        else:
            document[key] = value
        entries["cfsx_metadata.json"] = json.dumps(document).encode()
    elif mod == "drop":
        entries.pop(recipe["entry"], None)
    elif mod == "config":
        value = recipe["value"]
        config = json.loads(entries["config.json"])
        if value == "layer-class":
            config["config"]["layers"][2]["class_name"] = "Lambda"
        elif value == "layer-module":
            config["config"]["layers"][2]["module"] = "os"
            config["config"]["layers"][2]["class_name"] = "system"
        elif value == "shape":
            config["config"]["layers"][0]["config"]["batch_shape"] = [None, 32, 32]
        else:
            config = None
        entries["config.json"] = json.dumps(config).encode() if config is not None else value.encode()
    elif mod == "weights":
        weights = entries["model.weights.h5"]
        entries["model.weights.h5"] = weights[: int(len(weights) * recipe["at"])]
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def materialize(case: dict, case_dir: Path, shared: Path) -> list[str]:
    """Make the files of a case; returns notes on how they were made (for the report)."""
    notes = []
    for recipe in case["files"]:
        path = case_dir / recipe["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        kind = recipe["kind"]
        src = recipe.get("src", "")
        source = shared / src.removeprefix("@S/") if src.startswith("@S/") else case_dir / src
        if kind == "text":
            path.write_text(recipe["text"])
        elif kind == "bytes":
            path.write_bytes(bytes.fromhex(recipe["hex"]))
        elif kind == "random":
            path.write_bytes(np.random.default_rng(recipe["seed"]).bytes(recipe["size"]))
        elif kind == "mkdir":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "copy":
            shutil.copyfile(source, path)
        elif kind == "copytree":
            shutil.copytree(source, path)
        elif kind == "cut":
            content = source.read_bytes()
            path.write_bytes(content[: int(len(content) * recipe["at"])])
        elif kind == "flip":
            content = bytearray(source.read_bytes())
            for where, xor in recipe["flips"]:
                if content:
                    content[int(len(content) * where)] ^= xor
            path.write_bytes(bytes(content))
        elif kind == "image":
            array = make_array(recipe["array"])
            note = write_image(path, recipe["format"], array)
            notes.append(f"{recipe['path']}: {describe_array(recipe['array'], array)}{note}")
        elif kind == "h5":
            make_h5(path, recipe, shared)
        elif kind == "keras":
            make_keras(path, recipe, shared)
    return notes


def describe_array(recipe: dict, array: np.ndarray) -> str:
    if "describe" in recipe:
        return recipe["describe"]
    special = "" if recipe["special"] == "none" else f", {recipe['fraction']:g} {recipe['special']}"
    return f"{array.dtype} {array.shape} {recipe['fill']}{special}"


def describe_files(case: dict) -> str:
    parts = [case["about"]] if case.get("about") else []
    for recipe in case["files"]:
        kind, path = recipe["kind"], recipe["path"]
        src = recipe.get("src", "").replace("@S/", "shared/")
        text = {
            "cut": lambda r: f"{path} = {src} cut at {r['at']:.3f}",
            "flip": lambda r: f"{path} = {src} with {len(r['flips'])} bytes flipped",
            "copy": lambda r: f"{path} = copy of {src}",
            "copytree": lambda r: f"{path} = copy of {src}",
            "h5": lambda r: f"{path} = {src} " + " ".join(
                f"{k}={v}" for k, v in r.items()
                if k not in ("path", "kind", "src") and not (k == "value" and r["mod"] == "delattr")),
            "keras": lambda r: f"{path} = {src} " + " ".join(
                f"{k}={json.dumps(v)[:40]}" for k, v in r.items() if k not in ("path", "kind", "src")),
            "image": lambda r: f"{path} = {r['format']} of " + (r["array"].get("describe") or
                                                                 f"{r['array']['dtype']} {tuple(r['array']['shape'])} "
                                                                 f"{r['array']['fill']} {r['array']['special']}"),
            "text": lambda r: f"{path} = text {r['text'][:40]!r}" + ("..." if len(r["text"]) > 40 else ""),
            "bytes": lambda r: f"{path} = {len(r['hex']) // 2} bytes",
            "random": lambda r: f"{path} = {r['size']} random bytes",
            "mkdir": lambda r: f"{path}/ (directory)",
        }[kind](recipe)  # fmt: skip
        parts.append(text)
    return "; ".join(parts)
