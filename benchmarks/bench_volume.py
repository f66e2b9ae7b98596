"""Planes of a 3-D reciprocal-space volume: seconds and peak memory of ``cfsx.io.readers.read_image`` per plane.

A SIZE^3 float32 volume (640^3: 1 GB) is written, contiguous and chunked 64^3, in NXRefine's layout into a
temporary folder: ``sample/f1_transform.nxs`` whose ``/entry/transform`` (axes Ql, Qk, Qh in r.l.u.) has
as its signal an external link to ``sample/f1/transform.nxs::/entry/data/v``. Its values are
v[i, j, k] = 10000 i + 100 j + k (exact in float32), so every plane read is checked. One plane through
0 along each axis (``[l=0]``, ``[k=0]``, ``[h=0]``; ``h`` is the fastest-varying array axis) and one
thick plane ``[h=0+-0.05]`` (11 slices summed) are read, each in a fresh subprocess, after asking the
kernel to drop the volume's pages from its cache (posix_fadvise DONTNEED), so the reads come from disk.
The memory (Linux) is the subprocess's peak resident set size during the read: VmHWM of /proc/self/status,
its high-water mark reset after importing numpy, h5py, hdf5plugin and cfsx.io.readers by writing 5 to
/proc/self/clear_refs, so the imports' own transient peak is left out (Python and the imported modules
resident are included); and that peak minus the resident set just before the read (VmRSS): what reading
the plane added. Not getrusage's ru_maxrss: in a child it never falls below the parent's resident set at
the fork (Linux keeps the larger of the two across exec), here the writer's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from harness import add_output, machine_line, markdown_table, replace_block

SIZE = 640
STEP = 0.01  # r.l.u. between bin centres; the centre of slice SIZE // 2 is 0
SLAB = 16  # slices written at a time (26 MB at 640^2)
TARGET_GB = 0.3
PLANES = ("l=0", "k=0", "h=0", "h=0+-0.05")

CHILD = """
import json, sys, time
import h5py, hdf5plugin, numpy
from cfsx.io.readers import read_image

def status(field):
    with open("/proc/self/status") as lines:
        return int(lines.read().split(field + ":")[1].split()[0])  # KiB

with open("/proc/self/clear_refs", "w") as marks:
    marks.write("5")  # resets the peak resident set (VmHWM) to the present one
baseline = status("VmRSS")
started = time.perf_counter()
image, info = read_image(sys.argv[1])
seconds = time.perf_counter() - started
peak = status("VmHWM")
plane = info["axes"]["plane"]
print(json.dumps({"seconds": seconds, "baseline_kib": baseline, "peak_kib": peak, "slices": plane["slices"],
                  "axis": plane["axis"], "sum": float(numpy.sum(image, dtype=numpy.float64)),
                  "shape": list(image.shape)}))
"""


def write_volume(folder: Path, size: int, chunked: bool) -> Path:
    """The NXRefine-like pair of files in ``folder``; returns the volume's file (its pages to be dropped)."""
    (folder / "sample" / "f1").mkdir(parents=True, exist_ok=True)
    volume_path = folder / "sample" / "f1" / "transform.nxs"
    plane = (100 * np.arange(size, dtype=np.float32)[:, None] + np.arange(size, dtype=np.float32)[None, :])[None]
    with h5py.File(volume_path, "w") as file:
        chunks = (64, 64, 64) if chunked else None
        dataset = file.create_dataset("entry/data/v", shape=(size,) * 3, dtype=np.float32, chunks=chunks)
        for start in range(0, size, SLAB):
            indices = np.arange(start, min(start + SLAB, size), dtype=np.float32)[:, None, None]
            dataset[start : start + len(indices)] = 10000 * indices + plane
    centres = (np.arange(size) - size // 2) * STEP
    with h5py.File(folder / "sample" / "f1_transform.nxs", "w") as file:
        file.attrs.update(NX_class="NXroot", default="entry")
        entry = file.create_group("entry")
        entry.attrs.update(NX_class="NXentry", default="transform")
        transform = entry.create_group("transform")
        transform.attrs.update(NX_class="NXdata", signal="data", axes=["Ql", "Qk", "Qh"])
        transform["data"] = h5py.ExternalLink("f1/transform.nxs", "/entry/data/v")
        for name in ("Ql", "Qk", "Qh"):
            transform[name] = centres
            transform[name].attrs["units"] = "rlu"
    return volume_path


def drop_cached(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (written back first), so that the next read is cold."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def expected_sum(size: int, axis: str, indices: range) -> float:
    """The sum of v[i, j, k] = 10000 i + 100 j + k over the given slices along ``axis`` (exact, in float64)."""
    total = size * (size - 1) / 2  # the sum of 0..size-1
    weights = {"l": 10000, "k": 100, "h": 1}
    fixed = sum(indices) * weights[axis] * size * size
    free = sum(weight for name, weight in weights.items() if name != axis) * total * size * len(indices)
    return fixed + free


def read_plane(spec: str, folder: Path) -> dict:
    """One ``read_image(spec)`` in a fresh interpreter (in ``folder``: the installed cfsx, as bench_correction.py
    runs it): its seconds, memory and what it read."""
    result = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True, text=True, cwd=folder)
    if result.returncode:
        raise SystemExit(f"reading {spec} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_output(parser)
    parser.add_argument("--size", type=int, default=SIZE, help="voxels per side of the cubic volume")
    parser.add_argument("--layouts", nargs="+", choices=("contiguous", "chunked"), default=["contiguous", "chunked"])
    parser.add_argument("--dir", type=Path, help="folder for the temporary files (default: the system's)")
    args = parser.parse_args()
    gigabytes = args.size**3 * 4 / 1e9
    rows = []
    for layout in args.layouts:
        with tempfile.TemporaryDirectory(dir=args.dir) as name:
            started = time.perf_counter()
            volume_path = write_volume(Path(name), args.size, layout == "chunked")
            print(f"{layout}: wrote {gigabytes:.2f} GB in {time.perf_counter() - started:.0f} s", flush=True)
            master = Path(name) / "sample" / "f1_transform.nxs"
            for plane in PLANES:
                drop_cached(volume_path)
                measured = read_plane(f"{master}[{plane}]", Path(name))
                indices = range(*measured["slices"])
                if measured["sum"] != expected_sum(args.size, measured["axis"], indices):
                    raise SystemExit(f"{master}[{plane}]: the plane read is not the plane written")
                above = (measured["peak_kib"] - measured["baseline_kib"]) / 1024
                peak = measured["peak_kib"] / 1024
                layout_text = "contiguous" if layout == "contiguous" else "chunked 64^3"
                rows.append((
                    layout_text, f"[{plane}]", str(len(indices)), f"{measured['seconds']:.2f} s",
                    f"{above:.0f} MB", f"{peak:.0f} MB", "yes" if peak / 1024 < TARGET_GB else "NO",
                ))  # fmt: skip
                print(*rows[-1], sep=" | ", flush=True)
    header = ("volume", "plane", "slices", "time per plane", "added by the read", "peak RSS of the read", "< 0.3 GB")
    table = markdown_table(header, rows)
    print(table)
    if args.output:
        size = f"{args.size}^3 float32 ({gigabytes:.2f} GB)"
        text = f"{machine_line('make bench')} Volume {size}, read from disk (its pages dropped from the cache)."
        replace_block(args.output, "bench-volume", text + "\n\n" + table)


if __name__ == "__main__":
    main()
