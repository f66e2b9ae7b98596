"""The values the fuzz cases are drawn from: awkward option and YAML values, odd keys, and what the shared files hold
(what a variant of one deletes or changes)."""

from __future__ import annotations

TINY_SETS = {"lattice.size": "16", "diffraction.lot_size": "8", "diffraction.image_size": "16"}
TINY = [item for key, value in TINY_SETS.items() for item in ("--set", f"{key}={value}")]
# What the shared files hold (arrays, attributes besides format): what a variant deletes or changes.
SAMPLES = ["images", "encodings/achieved", "encodings/target", "interactions", "seeds", "cycles", "lattices"]
DATASET_ATTRIBUTES = ["cfs", "cfsx_version", "config", "created", "format_version", "samples_total", "seed", "vectors"]
FILE_CONTENTS = {
    "data.h5": (SAMPLES, DATASET_ATTRIBUTES),
    "shard-0.h5": (SAMPLES, [*DATASET_ATTRIBUTES, "sample_start", "sample_stop", "shard_count", "shard_index"]),
    "shard-1.h5": (SAMPLES, [*DATASET_ATTRIBUTES, "sample_start", "sample_stop", "shard_count", "shard_index"]),
    "corrected.h5": (["images", "masks", "provenance", "sources"],
                     ["cfsx_version", "config", "created", "format_version", "h_max", "image_size", "kind"]),
    "store.h5": ([*SAMPLES, "sources"],
                 ["cfs", "cfsx_version", "config", "created", "format_version", "kind", "vectors"]),
}  # fmt: skip
COMMANDS = ["simulate", "merge", "info", "train", "evaluate", "correct", "interpret"]

# --- awkward values -------------------------------------------------------------------------------------

AWKWARD_YAML = [
    "-1", "0", "1", "2", "3", "7", "16", "-0", "4097", "2147483648", "9223372036854775808",
    "100000000000000000000000000000", "0.5", "-0.5", "1.5", "16.0", "1e-300", "1e300", "-1e300", ".nan", ".inf",
    "-.inf", "nan", "inf", "null", "~", "", "true", "false", "yes", "'16'", "abc", "all", "uniform", "small",
    "gaussian", "lattice", "none", "0x10", "1_000", "2026-01-01", "é", "[]", "[1]", "[0.1, 0.2]",
    "[-0.1, 0.1, 0.2]", "[0.1, 0.2, 0.3, 0.4]", "[.nan, 0, 0]", "[1e300, 0, 0]", "[[1]]", "[true, false]",
    "[0, 0]", "[1, 2, 3]", "{a: 1}", "{}", "{low: 1}", "[1", "{", "'", "&a [*a]", "!!binary aGVsbG8=",
    "!!python/object/apply:os.system ['true']", "!!set {a, b}", "*undefined", "- 1", "a: b: c", "1 #c",
    "x" * 5000,
]  # fmt: skip
ATTRIBUTE_VALUES = [
    "0", "-1", "9", "2**63", "'x'", "''", "'{{{'", "'lattice: {size: 3}'", "'!!python/object/apply:os.system [true]'",
    "[1, 2]", "[[9, 9]]", "float('nan')", "'encoding: {cfs: 5}'", "'corrected'", "b'\\xff'",
]  # fmt: skip
ODD_KEYS = [
    "lattice.colour", "nosuch.size", "lattice", "lattice.size.extra", ".size", "lattice.", "LATTICE.size",
    " lattice.size", "lattice .size", "run.samples ", "é.x", "lattice.__class__", "targets.bounds", "=",
    "model.architecture", "mask.edge",
]  # fmt: skip
AWKWARD_JSON = [
    None, 0, -1, 1, 2, 3, 9, 16, 2**63, 1.5, float("nan"), float("inf"), "x", "", [], [[0, 1]], [1, 2, 3], {},
    {"test": [0, 1, 2]}, {"test": [-1, 10**6]}, {"test": ["a"]}, True, "lattice: {size: 16}", "{{{",
    "!!python/object/apply:os.system ['true']", list(range(200)),
]  # fmt: skip
TRAINING_YAML = [
    "fit: {epochs: 1}\n", "fit: [1]\n", "fit:\n epochs: 1\n", "model: {architecture: large}\nfit: {epochs: 1}\n",
    "evaluation: {resimulated: -1}\n", "fit: {epochs: 1e9}\n",
]  # fmt: skip
INT_OPTION = ["-1", "0", "1", "2", "3", "2147483648", "9223372036854775808", "1" + "0" * 30, "1.5", "abc", ""]
FLOAT_OPTION = ["-1", "0", "1e-300", "0.2", "0.5", "1", "1e300", "nan", "inf", "-inf", "abc", ""]
PAIRS = [
    "0,0", "8,8", "20,20", "-5,3", "1e300,0", "nan,nan", "inf,0", "1,2,3", "a,b", "", ",", "5", " 3 , 4 ",
    "1e-300,1e-300", "0x10,5", "-0,-0", "1e20,1e20",
]  # fmt: skip
CENTRES = ["0,0", "1,0", "4,-2", "0.5,0", "1e300,0", "nan,0", "inf,inf", "99999999999,0", "-1", "a", "", "1,2,3"]
