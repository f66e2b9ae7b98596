"""The fuzz cases of the commands that read images: correct and interpret."""

from __future__ import annotations

import re

from harness import ROOT

from fuzzing.drawer import Drawer
from fuzzing.values import AWKWARD_YAML, CENTRES, PAIRS


def draw_correct_arrays(d: Drawer, keys) -> dict:
    images = []
    for number in range(d.pick([1, 1, 1, 1, 2, 3])):
        images.append(d.make(f"in/a{number}.npy", "image", format="npy", array=d.array_recipe()))
    return {"args": ["correct", *images, "-o", "out/c.h5"]}


def draw_correct_files(d: Drawer, keys) -> dict:
    images = []
    for number in range(d.pick([1, 1, 1, 2])):
        kind = d.pick(["image"] * 6 + ["wrong-suffix", "text", "empty", "dir", "glob", "missing", "random", "dataset"])
        if kind == "image":
            images.append(d.image_file(f"i{number}", ("tif", "tif", "png", "png", "edf", "h5", "npy")))
        elif kind == "wrong-suffix":
            fmt, suffix = d.pick([("npy", ".tif"), ("tif", ".png"), ("png", ".npy"), ("h5", ".edf"), ("tif", ".cbf")])
            images.append(d.make(f"in/w{number}{suffix}", "image", format=fmt, array=d.array_recipe(0.0)))
        elif kind == "text":
            images.append(d.make(f"in/t{number}.{d.pick(['png', 'tif', 'npy', 'edf'])}", "text", text="P2\n1 1\n"))
        elif kind == "empty":
            images.append(d.make(f"in/e{number}.{d.pick(['png', 'tif', 'npy', 'h5'])}", "bytes", hex=""))
        elif kind == "dir":
            images.append(d.pick(["in", "out"]))
        elif kind == "glob":
            images.append(d.pick(["in/*.npy", "in/*.nothing", "in/[", "*"]))
        elif kind == "missing":
            images.append(d.pick(["in/missing.tif", "", "-", "in/x.h5::/entry/data"]))
        elif kind == "random":
            suffix = d.pick([".tif", ".png", ".cbf", ".edf", ".img", ".mccd", ".h5"])
            images.append(d.make(f"in/r{number}{suffix}", "random", size=d.pick([8, 4096]), seed=d.integer(0, 2**31)))
        else:
            images.append(d.shared("data.h5") + d.pick(["::/images", "::/seeds", "::/encodings", ""]))
    return {"args": ["correct", *images, "-o", d.output("c.h5", existing="corrected.h5")]}


def draw_correct_options(d: Drawer, keys) -> dict:
    image = d.valid_image()
    args = ["correct", image, "-o", d.output("c.h5", existing="corrected.h5")]
    args += _correction_options(d, keys, "--set")
    if d.chance(0.2):
        args += [
            "--config",
            d.choose(
                [
                    lambda: d.pick(["correct", "interpret", "demo", "nonexistent", ""]),
                    lambda: _yaml_config(d, "correct"),
                ]
            ),
        ]
    if d.chance(0.15):
        args += [
            "--reference",
            d.choose(
                [
                    lambda: d.shared(d.pick(["data.h5", "corrected.h5", "model.keras"])),
                    lambda: d.broken_file("ref", "data.h5"),
                    lambda: "in/missing.h5",
                ]
            ),
        ]
    if d.chance(0.1):
        args += [
            "--figures",
            d.choose([lambda: d.make("out/fig", "mkdir"), lambda: "out/nofig", lambda: image.partition("::")[0]]),
        ]
    return {"args": args}


def _yaml_config(d: Drawer, name: str) -> str:
    text = (ROOT / "configs" / f"{name}.yaml").read_text()
    lines = text.splitlines(keepends=True)
    row = int(d.fraction() * len(lines))
    op = d.pick(["delete", "indent", "garbage", "value"])
    d.about.append(f"{name}.yaml: {op} line {row + 1}")
    if op == "delete":
        del lines[row]
    elif op == "indent":
        lines[row] = "   " + lines[row]
    elif op == "garbage":
        lines.insert(row, d.pick(["}{\n", "- x\n", "key: [\n", "\tx: 1\n"]))
    else:
        lines[row] = re.sub(r":\s*\S.*$", ": " + d.pick(AWKWARD_YAML[:45]).replace("\n", ""), lines[row])
    return d.make(f"in/{name}.yaml", "text", text="".join(lines))


def _correction_options(d: Drawer, keys, set_option: str) -> list[str]:
    args = []
    if d.chance(0.3):
        args += ["--origin", d.pick(PAIRS)]
    if d.chance(0.3):
        args += ["--pixels-per-rlu", d.pick(PAIRS)]
    if d.chance(0.15):
        args += ["--rotation", d.pick(["0", "45", "-720", "1e300", "nan", "inf", "1e-300", "x"])]
    if d.chance(0.2):
        args += ["--centre", d.pick(CENTRES)]
    if d.chance(0.2):
        kind = d.pick(["npy", "npy", "npy", "ones", "zeros", "broken", "missing", "dir", "image"])
        if kind == "npy":
            mask = d.make("in/mask.npy", "image", format="npy", array=d.array_recipe(0.3))
        elif kind in ("ones", "zeros"):
            mask = d.make("in/mask.npy", "image", format="npy",
                          array={"shape": [40, 40], "dtype": "uint8", "fill": "const", "const": int(kind == "ones"),
                                 "special": "none", "fraction": 0, "seed": 0})  # fmt: skip
        elif kind == "broken":
            mask = d.make("in/mask.npy", "cut", src=d.shared("image.npy"), at=d.fraction())
        elif kind == "image":
            mask = d.image_file("mask", ("tif", "png", "h5"))
        else:
            mask = {"missing": "in/missing.npy", "dir": "in"}[kind]
        args += ["--mask", mask]
    if d.chance(0.5):
        for _ in range(d.integer(1, 3)):
            args += [set_option, d.overrides(keys["correction"], 1)[1]]
    return args


def _interpret_base(d: Drawer) -> list[str]:
    return ["-o", d.output("r", directory=True, existing="interp"), "--replicates", "1", "--no-figures"]


def draw_interpret_images(d: Drawer, keys) -> dict:
    images = []
    for number in range(d.pick([1, 1, 1, 2])):
        if d.chance(0.5):
            images.append(d.make(f"in/a{number}.npy", "image", format="npy", array=d.array_recipe()))
        else:
            images.append(d.image_file(f"i{number}"))
    return {"args": ["interpret", "--model", d.shared("model.keras"), *images, *_interpret_base(d)]}


def draw_interpret_files(d: Drawer, keys) -> dict:
    model = d.shared("model.keras") if d.chance(0.4) else d.broken_model()
    kind = d.pick(["image", "data", "corrected", "store", "cfs3", "broken", "h5", "h5"])
    if kind == "image":
        source = d.valid_image()
    elif kind in ("broken", "h5"):
        base = d.pick(["data.h5", "corrected.h5", "store.h5"])
        source = d.broken_file("x", base) if kind == "broken" else d.h5_variant("x", base)
    else:
        source = d.shared({"data": "data.h5", "corrected": "corrected.h5", "store": "store.h5",
                           "cfs3": "data-cfs3.h5"}[kind])  # fmt: skip
    args = ["interpret", "--model", model, source, *_interpret_base(d)]
    if d.chance(0.3):
        kind = d.pick(["new", "copy", "broken", "h5", "data", "dir"])
        if kind == "new":
            record = "out/store.h5"
        elif kind == "copy":
            record = d.make("out/store.h5", "copy", src=d.shared("store.h5"))
        elif kind == "broken":
            record = d.broken_file("store", "store.h5", folder="out")
        elif kind == "h5":
            record = d.h5_variant("store", "store.h5", folder="out")
        elif kind == "data":
            record = d.make("out/data.h5", "copy", src=d.shared("data.h5"))
        else:
            record = d.make("out/storedir", "mkdir")
        args += ["--record", record]
    return {"args": args}


def draw_interpret_options(d: Drawer, keys) -> dict:
    source = d.valid_image() if d.chance(0.7) else d.shared(d.pick(["data.h5", "corrected.h5"]))
    args = [
        "interpret",
        "--model",
        d.shared("model.keras"),
        source,
        "-o",
        d.output("r", directory=True, existing="interp"),
    ]
    args += ["--replicates", d.pick(["-1", "0", "1", "2", "9223372036854775808", "x"]) if d.chance(0.3) else "1"]
    args += ["--figures", "out"] if d.chance(0.1) else ["--no-figures"]
    if d.chance(0.15):
        args += ["--refine", "--set", "refine.expected_iterations=5", "--set", "refine.decoded_iterations=1",
                 "--set", "refine.seeds=1"]  # fmt: skip
    if d.chance(0.2):
        args += ["--workers", d.pick(["-1", "0", "1", "2", "64", "9223372036854775808"])]
    if d.chance(0.4):
        args += d.overrides(keys["interpretation"], 2)
    if d.chance(0.15):
        args += [
            "--config",
            d.choose(
                [lambda: d.pick(["interpret", "correct", "train", "nonexistent"]), lambda: _yaml_config(d, "interpret")]
            ),
        ]
    if d.chance(0.15):
        args += [
            "--correct-config",
            d.choose([lambda: d.pick(["correct", "interpret", "nonexistent"]), lambda: _yaml_config(d, "correct")]),
        ]
    args += _correction_options(d, keys, "--correct-set")
    if d.chance(0.1):
        args += [
            "--record",
            d.choose([lambda: "out/store.h5", lambda: d.broken_file("store", "store.h5", folder="out")]),
        ]
    return {"args": args}
