"""Issue 27: the least squares after ``cfsx correct`` with and without the Bragg step's resolution test.

Mean over the six generalisation groups (first N cases) of the CFS4 least squares' alpha MAE on the clean images and
the bragg and combined kinds at each level, through ``correct_image`` with the built-in config and overrides:
today's step, the resolution test at 1 and 2 pixels with tail 0.01 and 0.03, and no Bragg step.

    PYTHONPATH=. .venv/bin/python benchmarks/bragg_resolution.py 100   (about 2 minutes on 2 cores)
"""

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generalisation_data as gd  # noqa: E402

from cfsx.config import CorrectionConfig, load_config  # noqa: E402
from cfsx.correction import correct_image  # noqa: E402
from cfsx.errors import DataError  # noqa: E402
from cfsx.interpretation.estimates import least_squares  # noqa: E402

GROUPS = [s.name for s in gd.GROUPS]
SETS = [("clean", None)] + [(k, level) for k in ("bragg", "combined") for level in (1, 2, 3)]


def run(job):
    group, kind, level, overrides, n = job
    data = gd.load_group(f"bench-output/generalisation-data/{group}.h5")
    ims = data["images_clean"][:n] if kind == "clean" else data[f"images_corrupted/{kind}/{level}"][:n]
    masks = None
    if kind == "combined":
        masks = data[f"masks/combined/{level}"][:n] if f"masks/combined/{level}" in data else None
    cfg = load_config("correct", list(overrides), root=CorrectionConfig)
    out = []
    for i, im in enumerate(ims):
        try:
            out.append(correct_image(im, cfg, extra_mask=None if masks is None else masks[i] != 0).image)
        except DataError:
            out.append(np.full((64, 64), np.nan))
    images = np.array(out, float)
    refused = ~np.isfinite(images).all(axis=(1, 2))  # correct refused the image: left out, and said so
    if refused.any():
        print(f"{group} {kind} {level} {overrides}: {refused.sum()} images refused by correct, left out")
    est = least_squares(images[~refused], gd.cfs_vectors(4), 1.0)
    return np.abs(est - data["alpha_cfs4"][:n][~refused]).mean(axis=1).mean()


if __name__ == "__main__":
    variants = {
        "today": [],
        "r1t.01": ["bragg.tail=0.01"],
        "r1t.03": ["bragg.tail=0.03"],
        "r2t.01": ["bragg.resolution=2", "bragg.tail=0.01"],
        "off": ["bragg.enabled=false"],
    }
    n = int(sys.argv[1])
    jobs = [(g, k, level, tuple(v), n) for name, v in variants.items() for g in GROUPS for k, level in SETS]
    with ProcessPoolExecutor(2) as pool:
        res = list(pool.map(run, jobs))
    it = iter(res)
    print("variant", *[f"{k}{level or ''}" for k, level in SETS])
    for name in variants:
        vals = np.array([[next(it) for _ in SETS] for _ in GROUPS]).mean(axis=0)
        print(name, *[f"{v:.4f}" for v in vals])
