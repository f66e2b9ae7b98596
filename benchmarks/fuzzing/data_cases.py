"""The fuzz cases of the commands that make and read datasets and models: simulate, merge, info, train, evaluate."""

from __future__ import annotations

import re

from harness import ROOT

from fuzzing.drawer import Drawer
from fuzzing.values import FLOAT_OPTION, INT_OPTION, TINY, TINY_SETS, TRAINING_YAML


def _set_keys(args: list[str]) -> set[str]:
    return {args[i + 1].split("=", 1)[0] for i in range(len(args) - 1) if args[i] == "--set"}


def draw_simulate_set(d: Drawer, keys) -> dict:
    fuzzed = d.overrides(keys["simulation"])
    overridden = _set_keys(fuzzed)
    args = ["simulate", "demo", "-o", "out/d.h5"]
    args += [x for key, value in TINY_SETS.items() if key not in overridden for x in ("--set", f"{key}={value}")]
    if "run.samples" not in overridden:
        args += ["--samples", "4"]
    args += ["--workers", "1", *fuzzed]
    if d.chance(0.15):
        args += ["--seed", d.pick(INT_OPTION)]
    return {"args": args}


def draw_simulate_options(d: Drawer, keys) -> dict:
    config = d.pick(["demo"] * 8 + ["cfs2", "DEMO", "demo.yaml", "", "nonexistent", "train", "correct", "in"])
    args = ["simulate", config, "-o", d.output("d.h5", existing="data.h5"), *TINY]
    for option, values in (
        ("--samples", ["-5", "-1", "0", "1", "2", "3", "4", "5", "17", "2147483648", "9223372036854775808",
                       "1" + "0" * 30, "2.5", "x"]),
        ("--seed", INT_OPTION + ["4294967296", "9223372036854775807"]),
        ("--workers", ["-1", "0", "1", "2", "3", "64", "2147483648", "9223372036854775808", "x"]),
        ("--shard", ["0/1", "0/2", "1/2", "2/2", "-1/2", "0/0", "1/0", "a/b", "0/-1", "", "0", "1/2/3", " 0/2",
                     "0/1000000", "999/1000", "0/4", "1e3/2e3"]),
    ):  # fmt: skip
        if d.chance(0.5):
            args += [option, d.pick(values)]
    if "--samples" not in args:
        args += ["--samples", "4"]
    if "--workers" not in args:
        args += ["--workers", "1"]
    if d.chance(0.15):
        args.append("--resume")
    if d.chance(0.1):
        kind = d.pick(["address", "file", "both"])
        if kind in ("address", "both"):
            args += ["--scheduler", d.pick(["tcp://127.0.0.1:9", "not-an-address", "", "tcp://[::1", "inproc://x"])]
        if kind in ("file", "both"):
            args += [
                "--scheduler-file",
                d.choose([lambda: "in/missing.json", lambda: "in", lambda: d.make("in/s.json", "text", text="{")]),
            ]
        args += ["--scheduler-timeout", d.pick(["-1", "0", "0.5", "1", "nan"])]
    return {"args": args}


def _tiny_demo_yaml() -> str:
    text = (ROOT / "configs" / "demo.yaml").read_text()
    for key, value in (("size", "16"), ("image_size", "16"), ("lot_size", "8"), ("samples", "4")):
        text = re.sub(rf"(?m)^(\s+{key}:) \S+", rf"\1 {value}", text)
    return text


def draw_simulate_yaml(d: Drawer, keys) -> dict:
    text = _tiny_demo_yaml()
    kind = d.pick(["mutate"] * 10 + ["tag", "bomb", "nesting", "unknown", "toplevel", "documents", "encoding",
                                     "long", "duplicate", "crlf", "tabs"])  # fmt: skip
    data: bytes | None = None
    if kind == "mutate":
        lines = text.splitlines(keepends=True)
        for _ in range(d.integer(1, 4)):
            op = d.pick(["delete-char", "insert-char", "swap-chars", "delete-line", "duplicate-line", "swap-lines",
                         "indent", "dedent", "tab"])  # fmt: skip
            joined = "".join(lines)
            at = int(d.fraction() * max(len(joined), 1))
            row = int(d.fraction() * len(lines))
            d.about.append(f"{op} at {at if op.endswith(('char', 'chars')) else row}")
            if op == "delete-char":
                joined = joined[:at] + joined[at + 1 :]
            elif op == "insert-char":
                joined = joined[:at] + d.pick(list(": -\t\n#[]{}&*!|>%@`'\"0123456789.exyz,")) + joined[at:]
            elif op == "swap-chars" and at + 1 < len(joined):
                joined = joined[:at] + joined[at + 1] + joined[at] + joined[at + 2 :]
            lines = joined.splitlines(keepends=True) if op.endswith(("char", "chars")) else lines
            if op == "delete-line" and lines:
                del lines[row]
            elif op == "duplicate-line" and lines:
                lines.insert(row, lines[row])
            elif op == "swap-lines" and len(lines) > 1:
                other = int(d.fraction() * len(lines))
                lines[row], lines[other] = lines[other], lines[row]
            elif op == "indent" and lines:
                lines[row] = " " * d.integer(1, 4) + lines[row]
            elif op == "dedent" and lines:
                lines[row] = lines[row].lstrip(" ")
            elif op == "tab" and lines:
                lines[row] = lines[row].replace("  ", "\t", 1)
        text = "".join(lines)
    elif kind == "tag":
        tag = d.pick(["!!python/object/apply:os.system ['touch pwned']", "!!python/name:os.system",
                      "!!python/object/new:subprocess.Popen [['touch', 'pwned']]", "!!binary aGVsbG8=",
                      "!custom 16", "!!timestamp 2001-12-14", "!!str 16", "!!int '16'"])  # fmt: skip
        key = d.pick(["size", "samples", "seed", "cfs", "gain"])
        d.about.append(f"{key}: {tag}")
        text = re.sub(rf"(?m)^(\s+{key}:) \S+", lambda m: f"{m.group(1)} {tag}", text, count=1)
    elif kind == "bomb":
        levels, width = d.integer(1, 6), d.integer(2, 6)  # width ** levels values when expanded: at most 46656
        anchors = ["&a0 [" + ", ".join(["0.1"] * width) + "]"]
        anchors += [f"&a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]" for level in range(1, levels + 1)]
        bomb = "[" + ", ".join(anchors) + "]"  # every level in one flow sequence, the last one the largest
        key = d.pick(["low", "size", "samples", "gain"])
        d.about.append(f"{key}: an alias bomb of {levels} levels x {width} ({width**levels} values)")
        text = re.sub(rf"(?m)^(\s+{key}:) \S+", lambda m: f"{m.group(1)} {bomb}", text, count=1)
    elif kind == "nesting":
        depth = d.pick([10, 100, 1000, 5000, 20000])
        d.about.append(f"size: [[[...]]] nested {depth} deep")
        text = re.sub(r"(?m)^(\s+size:) \S+", lambda m: f"{m.group(1)} " + "[" * depth + "]" * depth, text, count=1)
    elif kind == "unknown":
        d.about.append("an unknown section or key appended")
        text += d.pick(["extra:\n  key: 1\n", "model:\n  architecture: small\n", "lattice:\n  colour: red\n",
                        "mask:\n  edge: 1\n", "1: 2\n", "? [a, b]\n: c\n", "null: 1\n"])  # fmt: skip
    elif kind == "toplevel":
        d.about.append("a whole file that is not a mapping of sections")
        text = d.pick(["", "---\n", "# only a comment\n", "- 1\n- 2\n", "16\n", "'demo'\n", "null\n", "[]\n", "{}\n",
                       "lattice: 16\n", "lattice: [16]\n", "lattice:\n  - size\n"])  # fmt: skip
    elif kind == "documents":
        d.about.append("two YAML documents")
        text = text + "---\n" + text
    elif kind == "encoding":
        d.about.append("a BOM, a NUL, latin-1, UTF-16 or invalid UTF-8 bytes")
        raw = text.encode()
        data = d.pick([b"\xef\xbb\xbf" + raw, raw.replace(b"uniform", b"unif\xe9rm"), raw.replace(b"16", b"1\x006"),
                       text.encode("utf-16"), raw[: len(raw) // 2] + b"\xff\xfe"])  # fmt: skip
    elif kind == "long":
        length = d.pick([1000, 100000, 2000000])
        d.about.append(f"targets.distribution {length} characters long")
        text = text.replace("uniform", "u" * length)
    elif kind == "duplicate":
        d.about.append("the lattice section twice")
        text = text + "lattice:\n  size: " + d.pick(["2", "16", "4097", "-1"]) + "\n"
    elif kind == "crlf":
        d.about.append("CRLF line ends")
        text = text.replace("\n", "\r\n")
    elif kind == "tabs":
        d.about.append("tabs for indentation")
        text = text.replace("  ", "\t")
    name = d.pick(["in/c.yaml"] * 6 + ["in/c", "in/c.yml", "in/c.txt"])
    if data is None:
        d.make(name, "text", text=text)
    else:
        d.make(name, "bytes", hex=data.hex())
    return {"args": ["simulate", name, "-o", "out/d.h5", "--workers", "1"], "allow_parts": True}


def draw_merge(d: Drawer, keys) -> dict:
    items = []
    for number in range(d.pick([0, 1, 2, 2, 2, 2, 3, 3, 4])):
        kind = d.pick(["s0", "s1", "s0", "s1", "broken", "broken", "broken", "h5", "notshard", "missing", "other",
                       "cfs3", "model", "glob"])  # fmt: skip
        if kind in ("s0", "s1"):
            items.append(d.shared(f"shard-{kind[1]}.h5"))
        elif kind == "broken":
            items.append(d.broken_file(f"b{number}", d.pick(["shard-0.h5", "shard-1.h5"])))
        elif kind == "h5":
            items.append(d.h5_variant(f"v{number}", d.pick(["shard-0.h5", "shard-1.h5"])))
        elif kind == "notshard":
            items.append(d.shared("data.h5"))
        elif kind == "missing":
            items.append("in/missing.h5")
        elif kind == "other":
            items.append(d.shared("shard-other-1.h5"))
        elif kind == "cfs3":
            items.append(d.shared("shard-cfs3-1.h5"))
        elif kind == "model":
            items.append(d.shared("model.keras"))
        else:
            items.append("in/*.h5")
    output = d.output("m.h5", existing="data.h5")
    if d.chance(0.05) and items:
        output = items[0]  # the output is one of the inputs
    return {"args": ["merge", *items, "-o", output]}


def draw_info(d: Drawer, keys) -> dict:
    kind = d.pick(["valid", "broken", "broken", "broken", "h5", "h5", "h5", "other"])
    if kind == "valid":
        target = d.shared(d.pick(["data.h5", "corrected.h5", "shard-0.h5", "store.h5"]))
    elif kind == "broken":
        target = d.broken_file("x", d.pick(["data.h5", "corrected.h5", "shard-0.h5", "store.h5"]))
    elif kind == "h5":
        target = d.h5_variant("x", d.pick(["data.h5", "data.h5", "corrected.h5", "store.h5"]))
    else:
        target = d.pick(["@S/model.keras", "@S/image.npy", "in/missing.h5", "", "-", "in"])
        target = d.shared(target[3:]) if target.startswith("@S/") else target
    return {"args": ["info", target]}


def _train_data(d: Drawer, number: int) -> str:
    kind = d.pick(["valid", "broken", "broken", "h5", "h5", "store", "shard", "cfs3", "corrected", "model"])
    if kind == "valid":
        return d.shared("data.h5")
    if kind == "broken":
        return d.broken_file(f"d{number}", d.pick(["data.h5", "store.h5"]))
    if kind == "h5":
        return d.h5_variant(f"d{number}", d.pick(["data.h5", "data.h5", "store.h5"]))
    return d.shared({"store": "store.h5", "shard": "shard-0.h5", "cfs3": "data-cfs3.h5", "corrected": "corrected.h5",
                     "model": "model.keras"}[kind])  # fmt: skip


def draw_train_data(d: Drawer, keys) -> dict:
    data = [_train_data(d, number) for number in range(d.pick([1, 1, 1, 2, 2, 3]))]
    output = d.pick(["out/m.keras"] * 6 + ["out/m.h5", "out/m", d.output("m.keras", existing="model.keras")])
    return {"args": ["train", *data, "-o", output, "--config", "train-demo", "--epochs", "1"]}


def draw_train_options(d: Drawer, keys) -> dict:
    args = ["train", d.shared("data.h5"), "-o", d.output("m.keras", existing="model.keras")]
    config = d.pick(["train-demo"] * 8 + ["train", "demo", "correct", "nonexistent", "", "yaml"])
    if config == "yaml":
        config = d.make("in/t.yaml", "text", text=d.pick(TRAINING_YAML))
    args += ["--config", config]
    epochs_fuzzed = d.chance(0.15)
    args += ["--epochs", d.pick(["-1", "0", "1", "2", "9223372036854775808", "1" + "0" * 30, "x"])
             if epochs_fuzzed else "1"]  # fmt: skip
    for option, values in (
        ("--batch-size", ["-1", "0", "1", "3", "65536", "65537", "9223372036854775808", "x"]),
        ("--val-split", FLOAT_OPTION),
        ("--test-split", FLOAT_OPTION),
        ("--learning-rate", ["-1", "0", "1e-300", "1e300", "nan", "inf", "0.001", "10"]),
        ("--patience", ["-1", "0", "1", "9223372036854775808"]),
        ("--seed", INT_OPTION + ["4294967296"]),
        ("--arch", ["small", "large", "", "tiny", "SMALL"]),
        ("--strategy", ["none", "mirrored", "multiworker", "", "MIRRORED", "tpu"]),
    ):
        if d.chance(0.2):
            args += [option, d.pick(values)]
    if d.chance(0.3):
        args += d.overrides(keys["training"], 2)
    if d.chance(0.2):
        args += [
            "--init",
            d.choose([lambda: d.shared("model.keras"), lambda: d.broken_model("init"), lambda: "in/missing.keras"]),
        ]
    return {"args": args}


def _evaluate_model(d: Drawer) -> str:
    return d.shared("model.keras") if d.chance(0.4) else d.broken_model()


def _evaluate_data(d: Drawer) -> str:
    kind = d.pick(["valid", "valid", "corrected", "shard", "cfs3", "broken", "broken", "h5", "h5", "store"])
    if kind in ("broken", "h5"):
        source = d.pick(["data.h5", "data.h5", "corrected.h5"])
        return d.broken_file("data", source) if kind == "broken" else d.h5_variant("data", source)
    return d.shared({"valid": "data.h5", "corrected": "corrected.h5", "shard": "shard-0.h5", "cfs3": "data-cfs3.h5",
                     "store": "store.h5"}[kind])  # fmt: skip


def draw_evaluate_files(d: Drawer, keys) -> dict:
    model = _evaluate_model(d)
    data = _evaluate_data(d)
    if model == "@S/model.keras" and data == "@S/data.h5":
        data = d.broken_file("data", "data.h5")
    args = ["evaluate", model, data, "-o", "out/report", "--config", "train-demo", "--resimulated", "2"]
    if d.chance(0.15):
        args += ["--compare", d.choose([lambda: d.shared("model.keras"), lambda: d.broken_model("other")])]
    return {"args": args}


def draw_evaluate_options(d: Drawer, keys) -> dict:
    data = d.shared(d.pick(["data.h5", "data.h5", "corrected.h5", "shard-0.h5"]))
    args = ["evaluate", d.shared("model.keras"), data, "-o", d.output("report", directory=True, existing="report")]
    config = d.pick(["train-demo"] * 8 + ["train", "demo", "interpret", "nonexistent", ""])
    args += ["--config", config]
    args += ["--resimulated", d.pick(["-1", "0", "1", "3", "9223372036854775808", "x"]) if d.chance(0.3) else "2"]
    for option, values in (
        ("--workers", ["-1", "0", "1", "2", "64", "9223372036854775808"]),
        ("--corrupt", ["-1", "0", "1e-300", "1", "100", "1e300", "nan", "inf", "x"]),
        ("--compare", ["@S/model.keras", "in/missing.keras", "in", "@S/data.h5"]),
    ):
        if d.chance(0.25):
            value = d.pick(values)
            args += [option, d.shared(value[3:]) if value.startswith("@S/") else value]
    if d.chance(0.35):
        args += d.overrides(keys["training"], 2)
    return {"args": args}
