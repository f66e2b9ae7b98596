"""cfsx correct on large single images: wall time and peak memory of the whole command.

Each image is a synthetic float32 detector image (smooth diffuse intensity, Bragg peaks at integer
h, k, Poisson noise at about 10 counts per pixel, a module gap flagged -1) with h = k = 0 at its
centre and 2000 pixels per r.l.u. at 8192 x 8192 (scaled with the size). ``cfsx correct`` runs in
a fresh subprocess per image with the default config (the local-median Bragg finder), once without
a calibration (the whole image is the window) and once with ``--origin`` and ``--pixels-per-rlu``;
the peak memory is that subprocess's maximum resident set size (Python, imports and all).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import CFSX, add_output, machine_line, markdown_table, replace_block

SIZES = (1024, 4096, 8192)
PIXELS_PER_RLU_AT_8192 = 2000
TARGET = "< 20 s, < 2 GB (8192 x 8192)"


def write_image(path: Path, size: int, seed: int = 0) -> tuple[int, float]:
    """A size x size float32 .npy detector image, written in strips; returns its origin and pixels per r.l.u."""
    origin, pixels_per_rlu = size // 2, PIXELS_PER_RLU_AT_8192 * size / 8192
    rng = np.random.default_rng(seed)
    image = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size, size))
    k = (np.arange(size) - origin) / pixels_per_rlu
    gap = slice(size * 300 // 512, size * 308 // 512)
    for start in range(0, size, 512):
        h = ((np.arange(start, min(start + 512, size)) - origin) / pixels_per_rlu)[:, None]
        diffuse = 1.0 + 0.5 * np.cos(2 * np.pi * h) * np.cos(2 * np.pi * k) + 0.3 * np.cos(4 * np.pi * (h + k))
        distance_squared = (h - np.round(h)) ** 2 + (k - np.round(k)) ** 2
        bragg = 2000.0 * np.exp(-distance_squared * pixels_per_rlu**2 / (2 * 1.5**2))
        strip = rng.poisson(10.0 * (diffuse + bragg)).astype(np.float32)
        strip[:, gap] = -1.0
        image[start : start + len(strip)] = strip
    image.flush()
    return origin, pixels_per_rlu


def run_correct(arguments: list[str], folder: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB) of one ``cfsx correct`` subprocess."""
    command = [*CFSX, "correct", *arguments, "-o", str(folder / "out.h5")]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    error = process.stderr.read().decode() if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"cfsx correct {' '.join(arguments)} failed: {error.strip()}")
    return seconds, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_output(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="image sizes (pixels per side)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for size in args.sizes:
            path = folder / f"image{size}.npy"
            origin, scale = write_image(path, size)
            calibration = ["--origin", f"{origin},{origin}", "--pixels-per-rlu", f"{scale:g},{scale:g}"]
            for label, extra in (("no calibration", []), (" ".join(calibration), calibration)):
                seconds, gigabytes = run_correct([str(path), *extra], folder)
                target = TARGET if size == 8192 else "-"
                rows.append((f"{size} x {size} float32", label, f"{seconds:.1f} s", f"{gigabytes:.2f} GB", target))
                print(*rows[-1], sep=" | ", flush=True)
            path.unlink()
    table = markdown_table(("image", "calibration", "wall time", "peak memory (RSS)", "target"), rows)
    print(table)
    if args.output:
        replace_block(args.output, "bench:correction", machine_line("make bench") + "\n\n" + table)


if __name__ == "__main__":
    main()
