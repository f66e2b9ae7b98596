"""Validate cfsx correct on detector images whose clean truth is known.

Each clean 64 x 64 training image (exact all-origins average of a simulated lattice) is rendered
again as a 512 x 512 "detector" image over a wider reciprocal window with the beam centre off the
middle, then corrupted: Bragg peaks at integer h, k, a detector gap and a beamstop, a form-factor
falloff, Poisson counting noise at several flux levels, and an arbitrary scale. The corrected image
is compared with the clean one (image R2, both normalised to the same mean), per corruption, all
together, and with each correction step switched off (the ablation).
Writes docs/correction.md's marked block and its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from report import markdown_table, replace_block

from cfsx import engine
from cfsx.config import load_config
from cfsx.correction import CorrectionConfig, correct_image
from cfsx.metrics import image_r2
from cfsx.simulate import simulate_sample

DETECTOR = 512
PIXELS_PER_RLU = 160  # the detector covers 3.2 r.l.u. in each direction
BEAM_CENTRE = (280, 220)  # pixel (row, column) of h = k = 0
FALLOFF_B = 0.25  # exp(-B (h^2 + k^2)), in r.l.u.^-2
BRAGG_HEIGHT = 2000.0  # peak height in units of the mean diffuse intensity
FLUXES = (0.3, 3.0, 30.0)  # mean counts per detector pixel (a 64 x 64 cell holds about 25 pixels)


def clean_pair(config, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The 64 x 64 training image of one simulated lattice and its 512 x 512 detector rendering."""
    sample = simulate_sample(config, seed)
    lot = config.diffraction.lot_size
    image = engine.all_lots_intensity(sample["lattices"], lot, 64, 1.0)
    # A 640-point grid over [-2, 2) has the detector's pixel pitch (1/160) and h = 0 at index 320.
    wide = engine.all_lots_intensity(sample["lattices"], lot, 640, 2.0)
    top, left = 320 - BEAM_CENTRE[0], 320 - BEAM_CENTRE[1]
    return image, wide[top : top + DETECTOR, left : left + DETECTOR]


def detector_hk() -> tuple[np.ndarray, np.ndarray]:
    rows, columns = np.meshgrid(np.arange(DETECTOR), np.arange(DETECTOR), indexing="ij")
    return (rows - BEAM_CENTRE[0]) / PIXELS_PER_RLU, (columns - BEAM_CENTRE[1]) / PIXELS_PER_RLU


def corrupt(detector: np.ndarray, kinds: set[str], rng: np.random.Generator, flux: float) -> np.ndarray:
    h, k = detector_hk()
    image = detector.copy()
    if "falloff" in kinds:
        image *= np.exp(-FALLOFF_B * (h**2 + k**2))
    if "bragg" in kinds:
        distance_squared = (h - np.round(h)) ** 2 + (k - np.round(k)) ** 2
        image += BRAGG_HEIGHT * detector.mean() * np.exp(-distance_squared * PIXELS_PER_RLU**2 / (2 * 1.5**2))
    if "noise" in kinds:
        image = rng.poisson(image * flux / detector.mean()) * detector.mean() / flux
    if "gaps" in kinds:
        image[:, 300:308] = -1.0  # a detector module gap, flagged as detectors do
        beamstop = np.hypot(h, k) < 0.12
        arm = (np.abs(k) < 0.03) & (h < 0)
        image[beamstop | arm] = -1.0
    return np.where(image < 0, image, image * (1234.5 if "scale" in kinds else 1.0))


def naive(image: np.ndarray, config: CorrectionConfig) -> np.ndarray:
    """'Before': the same resampling with no correction step at all."""
    off = dataclasses.replace(
        config,
        mask=dataclasses.replace(config.mask, nonpositive=False, negative=False),
        bragg=dataclasses.replace(config.bragg, enabled=False),
        reconstruction=dataclasses.replace(config.reconstruction, friedel=False, inpaint=False),
        background=dataclasses.replace(config.background, radial_falloff=False),
        smoothing=dataclasses.replace(config.smoothing, method="none"),
    )
    return correct_image(image, off).image


def score(truth: np.ndarray, corrected: np.ndarray) -> float:
    return float(image_r2(truth / truth.mean(), corrected / corrected.mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--output", type=Path, help="docs/correction.md")
    parser.add_argument("--figures", type=Path, help="directory for the example figure")
    parser.add_argument("--set", action="append", default=[], help="override a correction config value")
    args = parser.parse_args()
    simulation = load_config("cfs4", ["lattice.size=50", "diffraction.n_lots=all"])
    correction = load_config(
        "correct",
        [
            f"geometry.origin=[{BEAM_CENTRE[0]}, {BEAM_CENTRE[1]}]",
            f"geometry.pixels_per_rlu=[{PIXELS_PER_RLU}, {PIXELS_PER_RLU}]",
            "bragg.method=lattice",
            "mask.nonpositive=false",
        ]
        + args.set,  # fmt: skip
        root=CorrectionConfig,
    )
    rng = np.random.default_rng(0)
    pairs = [clean_pair(simulation, seed) for seed in range(args.images)]
    cases = [("clean", set(), 3.0), ("scale", {"scale"}, 3.0), ("bragg", {"bragg"}, 3.0), ("gaps", {"gaps"}, 3.0),
             ("falloff", {"falloff"}, 3.0)]  # fmt: skip
    cases += [(f"noise, {flux} counts/pixel", {"noise"}, flux) for flux in FLUXES]
    everything = {"scale", "bragg", "gaps", "falloff", "noise"}
    cases += [(f"all, {flux} counts/pixel", everything, flux) for flux in FLUXES]
    rows = []
    started = time.perf_counter()
    seconds_per_image = []
    for name, kinds, flux in cases:
        before, after = [], []
        for truth, detector in pairs:
            image = corrupt(detector, kinds, rng, flux)
            before.append(score(truth, naive(image, correction)))
            tic = time.perf_counter()
            after.append(score(truth, correct_image(image, correction).image))
            seconds_per_image.append(time.perf_counter() - tic)
        rows.append((name, f"{np.median(before):.3f}", f"{np.median(after):.3f}"))
    ablation = []
    steps = {
        "bragg peaks not masked": {"bragg": dataclasses.replace(correction.bragg, enabled=False)},
        "no Friedel fill": {"reconstruction": dataclasses.replace(correction.reconstruction, friedel=False)},
        "with falloff division": {"background": dataclasses.replace(correction.background, radial_falloff=True)},
        "with Gaussian smoothing, sigma 0.7 px": {
            "smoothing": dataclasses.replace(correction.smoothing, method="gaussian", size=0.7)
        },
        "gap flags (< 0) not masked": {"mask": dataclasses.replace(correction.mask, negative=False)},
    }
    for flux in (3.0,):
        images = [(truth, corrupt(detector, everything, rng, flux)) for truth, detector in pairs]
        full = np.median([score(t, correct_image(i, correction).image) for t, i in images])
        ablation.append(("all steps", f"{full:.3f}", ""))
        for name, change in steps.items():
            config = dataclasses.replace(correction, **change)
            value = np.median([score(t, correct_image(i, config).image) for t, i in images])
            ablation.append((name, f"{value:.3f}", f"{value - full:+.3f}"))
    table = markdown_table(("corruption", "image R2 before", "image R2 after"), rows)
    ablation_table = markdown_table(("correction (all corruptions, 3 counts/pixel)", "image R2", "change"), ablation)
    summary = (
        f"{args.images} CFS4 images (50 x 50 lattice, all lot origins), each rendered as a {DETECTOR} x {DETECTOR} "
        f"detector image at {PIXELS_PER_RLU} pixels per r.l.u. with h = k = 0 at pixel {BEAM_CENTRE}; median "
        f"image R2 against the clean 64 x 64 image. 'Before' resamples the same pixels with no correction. "
        f"Correction takes {np.median(seconds_per_image):.2f} s per image (median). Whole run "
        f"{time.perf_counter() - started:.0f} s (`make validate-correct`)."
    )
    print(summary)
    print(table)
    print(ablation_table)
    if args.output:
        replace_block(args.output, "validate-correct", summary + "\n\n" + table + "\n\n" + ablation_table)
    if args.figures:
        from cfsx import plots

        args.figures.mkdir(parents=True, exist_ok=True)
        truth, detector = pairs[0]
        image = corrupt(detector, everything, rng, 100)
        corrected = correct_image(image, correction)
        plots.correction_figure(image, corrected.image, corrected.mask, args.figures / "synthetic.png", truth[None])


if __name__ == "__main__":
    main()
