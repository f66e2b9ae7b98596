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

import numpy as np
from harness import SEED_STUDY_TARGETS, add_figures, add_output, markdown_table, replace_block

from cfsx.config import CorrectionConfig, load_config
from cfsx.correction import correct_image
from cfsx.physics import engine
from cfsx.physics.metrics import image_r2
from cfsx.simulation import simulate_sample
from cfsx.simulation.detector import Detector

DETECTOR = Detector()
FLUXES = (0.3, 3.0, 30.0)  # mean counts per detector pixel (a 64 x 64 cell holds about 25 pixels)


def clean_pair(config, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The 64 x 64 training image of one simulated lattice and its detector rendering."""
    sample = simulate_sample(config, seed)
    lot = config.diffraction.lot_size
    return engine.all_lots_intensity(sample["lattices"], lot, 64, 1.0), DETECTOR.render(sample["lattices"], lot)


def naive(image: np.ndarray, config: CorrectionConfig) -> np.ndarray:
    """'Before': the same resampling with no correction step at all."""
    off = dataclasses.replace(
        config,
        mask=dataclasses.replace(config.mask, zeros="values", negative=False),
        bragg=dataclasses.replace(config.bragg, enabled=False),
        geometry=dataclasses.replace(config.geometry, zones="centre"),  # the window's own pixels, not every zone's
        reconstruction=dataclasses.replace(config.reconstruction, symmetry="none", inpaint=False),
        background=dataclasses.replace(config.background, radial_falloff=False),
        smoothing=dataclasses.replace(config.smoothing, method="none"),
    )
    return correct_image(image, off).image


def score(truth: np.ndarray, corrected: np.ndarray) -> float:
    return float(image_r2(truth / truth.mean(), corrected / corrected.mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=6)
    add_output(parser, help_text="docs/correction.md")
    add_figures(parser, help_text="directory for the example figure")
    parser.add_argument("--set", action="append", default=[], help="override a correction config value")
    args = parser.parse_args()
    # The seed study's structures (uniform targets), as the committed figures were made with them.
    simulation = load_config("cfs4", [*SEED_STUDY_TARGETS[1::2], "lattice.size=50", "diffraction.n_lots=all"])
    correction = load_config("correct", DETECTOR.correction_overrides() + args.set, root=CorrectionConfig)
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
            image = DETECTOR.corrupt(detector, kinds, rng, flux)
            before.append(score(truth, naive(image, correction)))
            tic = time.perf_counter()
            after.append(score(truth, correct_image(image, correction).image))
            seconds_per_image.append(time.perf_counter() - tic)
        rows.append((name, f"{np.median(before):.3f}", f"{np.median(after):.3f}"))
    ablation = []
    steps = {
        "bragg peaks not masked": {"bragg": dataclasses.replace(correction.bragg, enabled=False)},
        "the window around h = k = 0 only (no fold of the other zones)": {
            "geometry": dataclasses.replace(correction.geometry, zones="centre")
        },
        "no symmetry averaging (Friedel)": {
            "reconstruction": dataclasses.replace(correction.reconstruction, symmetry="none")
        },
        "with falloff division": {"background": dataclasses.replace(correction.background, radial_falloff=True)},
        "with Gaussian smoothing, sigma 0.7 px": {
            "smoothing": dataclasses.replace(correction.smoothing, method="gaussian", size=0.7)
        },
        "gap flags (< 0) not masked": {"mask": dataclasses.replace(correction.mask, negative=False)},
    }
    # The finders that need no calibration, instead of the lattice positions.
    steps["local-median Bragg finder (the default without calibration)"] = {
        "bragg": dataclasses.replace(correction.bragg, method="local")
    }
    for threshold in (5.0, 10.0, 20.0):
        steps[f"top-hat Bragg finder, {threshold:g} sigma"] = {
            "bragg": dataclasses.replace(correction.bragg, method="tophat", threshold=threshold)
        }
    local = dataclasses.replace(correction, bragg=dataclasses.replace(correction.bragg, method="local"))
    for flux in FLUXES:  # the finder without calibration across count rates: no false peaks at high counts
        for name, kinds in (("noise", {"noise"}), ("all", everything)):
            images = [(truth, DETECTOR.corrupt(detector, kinds, rng, flux)) for truth, detector in pairs]
            value = np.median([score(t, correct_image(i, local).image) for t, i in images])
            rows.append((f"{name}, {flux} counts/pixel, local-median Bragg finder", "", f"{value:.3f}"))
    for flux in (3.0,):
        images = [(truth, DETECTOR.corrupt(detector, everything, rng, flux)) for truth, detector in pairs]
        full = np.median([score(t, correct_image(i, correction).image) for t, i in images])
        ablation.append(("all steps", f"{full:.3f}", ""))
        for name, change in steps.items():
            config = dataclasses.replace(correction, **change)
            value = np.median([score(t, correct_image(i, config).image) for t, i in images])
            ablation.append((name, f"{value:.3f}", f"{value - full:+.3f}"))
    table = markdown_table(("corruption", "image R2 before", "image R2 after"), rows)
    ablation_table = markdown_table(("correction (all corruptions, 3 counts/pixel)", "image R2", "change"), ablation)
    summary = (
        f"{args.images} CFS4 images (50 x 50 lattice, all lot origins), each rendered as a {DETECTOR.size} x "
        f"{DETECTOR.size} detector image at {DETECTOR.pixels_per_rlu} pixels per r.l.u. with h = k = 0 at pixel "
        f"{DETECTOR.beam_centre}; median "
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
        from cfsx.io import plots

        args.figures.mkdir(parents=True, exist_ok=True)
        truth, detector = pairs[0]
        image = DETECTOR.corrupt(detector, everything, rng, 3.0)
        corrected = correct_image(image, correction)
        figure = plots.correction_figure(image, corrected.image, corrected.mask, truth[None])
        plots.save(figure, args.figures / "synthetic.png")


if __name__ == "__main__":
    main()
