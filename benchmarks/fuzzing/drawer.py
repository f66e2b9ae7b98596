"""``Drawer``: the choices of one fuzz case, drawn from hypothesis' ``data`` object, and the recipes of its files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from fuzzing.values import ATTRIBUTE_VALUES, AWKWARD_JSON, AWKWARD_YAML, FILE_CONTENTS, ODD_KEYS


class Drawer:
    """Draws the cases of one (command, kind) group from hypothesis' ``data`` object."""

    def __init__(self, data, st) -> None:
        self.data, self.st = data, st
        self.files: list[dict] = []  # recipes of the files this case needs, made before it runs
        self.inputs: list[str] = []  # shared files (@S/...) the case names: hashed before and after
        self.about: list[str] = []  # what was done to a file, for the report

    def pick(self, values):
        return self.data.draw(self.st.sampled_from(list(values)))

    def choose(self, makers):
        """Pick one of several ways to make a value, and make only that one."""
        return self.pick(makers)()

    # Hypothesis favours the simplest choice (0, the first element): sampled_from only mildly, integers
    # strongly. So chances and small ranges are drawn with sampled_from, the simplest being "not taken".

    def chance(self, p: float) -> bool:
        return self.pick(range(100)) >= 100 - round(p * 100)

    def integer(self, low: int, high: int) -> int:
        if high - low < 1000:
            return self.pick(range(low, high + 1))
        return self.data.draw(self.st.integers(low, high))

    def fraction(self) -> float:
        return self.pick(range(1000)) / 1000

    def shared(self, name: str) -> str:
        path = f"@S/{name}"
        if path not in self.inputs:
            self.inputs.append(path)
        return path

    def make(self, path: str, kind: str, **params) -> str:
        self.files.append({"path": path, "kind": kind, **params})
        return path

    # files -------------------------------------------------------------------------------------------

    def array_recipe(self, small_by_hypothesis: float = 0.3) -> dict:
        """An array: small ones drawn element by element by hypothesis, larger ones from a seeded recipe."""
        if self.chance(small_by_hypothesis):
            from hypothesis.extra import numpy as hnp

            dtype = self.pick(["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint16",
                               "bool", "complex64", "complex128", ">f4"])  # fmt: skip
            dims = self.pick([0, 1, 2, 2, 2, 3])
            shapes = hnp.array_shapes(min_dims=dims, max_dims=dims, min_side=self.pick([0, 1, 2]), max_side=8)
            array = self.data.draw(hnp.arrays(np.dtype(dtype), shapes))
            buffer = io.BytesIO()
            np.save(buffer, array)
            return {"npy_hex": buffer.getvalue().hex(), "describe": f"{dtype} {array.shape} drawn"}
        ndim = self.pick([0, 1, 2, 2, 2, 2, 2, 2, 3, 3])
        sides = [1, 2, 3, 4, 5, 7, 16, 31, 40, 64, 100, 128, 257, 300]
        if ndim == 0:
            shape = []
        elif ndim == 1:
            shape = [self.pick([0, 1, 2, 5, 300])]
        elif ndim == 2:
            shape = [self.pick(sides), self.pick(sides)]
        else:
            r, c = self.pick(sides[3:]), self.pick(sides[3:])
            shape = self.pick([[1, r, c], [r, c, 1], [2, r, c], [r, c, 3], [r, c, 4], [3, 3, 3]])
        dtype = self.pick(["float16", "float32", "float32", "float64", "float64", "int8", "int16", "int32", "int64",
                           "uint8", "uint16", "uint16", "uint32", "bool", "complex64", "complex128", ">f8", "<u2",
                           "longdouble", "object", "U5", "datetime64[s]", "f4,i4"])  # fmt: skip
        fill = self.pick(["uniform", "uniform", "zeros", "const", "normal", "ramp", "peaks", "tiny", "huge", "bits",
                          "checker"])  # fmt: skip
        special = self.pick(["none", "none", "nan", "inf", "-inf", "negative", "zero"])
        return {"shape": shape, "dtype": dtype, "fill": fill, "const": self.pick([0, 1, -1, 1e-30, 1e30, 65504]),
                "special": special, "fraction": self.pick([0.001, 0.1, 0.5, 0.9, 1.0]),
                "seed": self.integer(0, 2**31)}  # fmt: skip

    def image_file(self, name: str, formats=("npy", "tif", "png", "edf", "h5")) -> str:
        """An image file of a random format, possibly cut short; returns the spec to pass to cfsx."""
        fmt = self.pick(formats)
        recipe = self.array_recipe(0.2 if fmt == "npy" else 0.0)
        suffix = {"npy": ".npy", "tif": ".tif", "png": ".png", "edf": ".edf", "h5": ".h5"}[fmt]
        path = self.make(f"in/{name}{suffix}", "image", format=fmt, array=recipe)
        spec = path
        if fmt == "h5":
            spec += self.pick(["::/entry/data", "::/entry/data", "::/entry", "::/missing", "::", ""])
        if self.chance(0.15):
            cut = self.make(f"in/cut-{name}{suffix}", "cut", src=path, at=self.fraction())
            spec = cut + spec[len(path) :]
        return spec

    def valid_image(self, name: str = "image") -> str:
        if self.chance(0.5):
            return self.shared("image.npy")
        recipe = {"shape": [self.pick([24, 40, 64, 100]), self.pick([24, 40, 64, 100])], "dtype": "float32",
                  "fill": self.pick(["uniform", "peaks"]), "const": 1, "special": self.pick(["none", "nan", "zero"]),
                  "fraction": 0.01, "seed": self.integer(0, 2**31)}  # fmt: skip
        fmt = self.pick(["npy", "tif", "h5"])
        path = self.make(f"in/{name}.{fmt}", "image", format=fmt, array=recipe)
        return path + ("::/entry/data" if fmt == "h5" else "")

    def broken_file(self, name: str, source: str, *, kind: str | None = None, folder: str = "in") -> str:
        """A damaged or foreign version of the shared file ``source`` (or something else entirely)."""
        h5_source = source.endswith(".h5")
        kind = kind or self.pick(["cut", "cut", "flip", "flip", "empty", "dir", "text", "random"]
                                 + (["h5", "h5", "h5"] if h5_source else []))  # fmt: skip
        suffix = Path(source).suffix
        path = f"{folder}/{name}{suffix}"
        if kind == "cut":
            return self.make(path, "cut", src=self.shared(source), at=self.fraction())
        if kind == "flip":
            flips = [[self.fraction(), self.integer(1, 255)] for _ in range(self.integer(1, 8))]
            return self.make(path, "flip", src=self.shared(source), flips=flips)
        if kind == "empty":
            return self.make(path, "bytes", hex="")
        if kind == "dir":
            return self.make(path, "mkdir")
        if kind == "text":
            return self.make(path, "text", text=self.pick(["hello\n", "format: cfsx-dataset\n", "{}", "\x00" * 64]))
        if kind == "random":
            return self.make(path, "random", size=self.pick([1, 8, 512, 4096, 100000]), seed=self.integer(0, 2**31))
        return self.h5_variant(name, source, folder=folder)

    def h5_variant(self, name: str, source: str = "data.h5", folder: str = "in") -> str:
        """A foreign or inconsistent HDF5 file, most of them a modified copy of a shared cfsx file."""
        arrays, attributes = FILE_CONTENTS.get(source, FILE_CONTENTS["data.h5"])
        mod = self.pick(["empty", "foreign", "format-only", "version", "format", "delete", "delete", "resize",
                         "resize", "resize", "dtype", "dtype", "shape", "values", "group", "scalar", "attr", "attr",
                         "attr", "delattr", "external", "softlink", "huge", "zero"])  # fmt: skip
        params: dict[str, Any] = {"mod": mod, "src": self.shared(source)}
        if mod in ("delete", "resize", "dtype", "group", "scalar", "external", "softlink", "values"):
            params["array"] = self.pick(arrays)
        if mod == "resize":
            params["length"] = self.pick([0, 1, 3, 7, 39, 41, 80, 100000])
        if mod == "dtype":
            params["dtype"] = self.pick(["S3", "complex64", "int8", "bool", "float16", "int64", "f4,i4"])
        if mod == "shape":
            params["shape"] = self.pick([[16], [16, 8], [1, 1], [16, 16, 2], [0, 0], [2048, 2048]])
        if mod == "values":
            params["value"] = self.pick(["nan", "inf", "-1", "0", "1e38"])
        if mod in ("attr", "delattr"):
            params["attr"] = self.pick([*attributes, "h_max", "kind", "image_size", "shard_index"])
            params["value"] = self.pick(ATTRIBUTE_VALUES)
        return self.make(f"{folder}/{name}.h5", "h5", **params)

    def broken_model(self, name: str = "model") -> str:
        kind = self.pick(["meta", "meta", "meta", "meta", "drop", "config", "weights", "cut", "flip", "empty",
                          "dir", "random", "h5", "text"])  # fmt: skip
        path = f"in/{name}.keras"
        if kind in ("cut", "flip", "empty", "dir", "random", "text"):
            return self.broken_file(name, "model.keras", kind=kind)
        if kind == "h5":
            return self.make(path, "copy", src=self.shared("data.h5"))
        params: dict[str, Any] = {"mod": kind, "src": self.shared("model.keras")}
        if kind == "meta":
            params["key"] = self.pick(["cfs", "vectors", "labels", "image_size", "h_max", "lot_size",
                                       "simulation_config", "training", "split", "metrics", "format", "format_version",
                                       "split.test", "training.data_fingerprint", "training.data_files", "cfs+vectors",
                                       "image_size+", "DELETE:labels", "DELETE:split",
                                       "DELETE:simulation_config"])  # fmt: skip
            params["value"] = self.pick(AWKWARD_JSON)
        elif kind == "drop":
            params["entry"] = self.pick(["config.json", "model.weights.h5", "metadata.json", "cfsx_metadata.json"])
        elif kind == "config":
            params["value"] = self.pick(["{}", "[]", "garbage", '{"class_name": "Sequential", "config": {}}',
                                         "layer-class", "layer-module", "shape"])  # fmt: skip
        elif kind == "weights":
            params["at"] = self.fraction()
        return self.make(path, "keras", **params)

    def output(self, name: str, *, directory: bool = False, existing: str | None = None) -> str:
        """An output path: mostly new in out/, sometimes odd (an existing file, directory, an input, '-')."""
        kind = self.pick(["new"] * 12 + ["exists-file", "exists-dir", "exists-nonempty-dir", "exists-output",
                                          "missing-parent", "dash", "empty", "input-dir"])  # fmt: skip
        path = f"out/{name}"
        if kind == "exists-file":
            self.make(path, "text", text="an earlier file\n")
        elif kind == "exists-dir":
            self.make(path, "mkdir")
        elif kind == "exists-nonempty-dir":
            self.make(path, "mkdir")
            self.make(f"{path}/notes.txt", "text", text="someone's notes\n")
        elif kind == "exists-output" and existing:
            self.make(path, "copytree" if directory else "copy", src=self.shared(existing))
        elif kind == "missing-parent":
            path = f"out/missing/{name}"
        elif kind == "dash":
            path = "-"
        elif kind == "empty":
            path = ""
        elif kind == "input-dir":
            path = "in"
        return path

    def overrides(self, keys: list[str], count_max: int = 3) -> list[str]:
        args = []
        for _ in range(self.integer(1, count_max)):
            key = self.pick(keys * 4 + ODD_KEYS)
            value = self.pick(AWKWARD_YAML)
            form = self.pick(["kv"] * 10 + ["noeq", "novalue", "nokey", "double"])
            text = {"kv": f"{key}={value}", "noeq": key, "novalue": f"{key}=", "nokey": f"={value}",
                    "double": f"{key}=={value}"}[form]  # fmt: skip
            args += ["--set", text]
        return args
