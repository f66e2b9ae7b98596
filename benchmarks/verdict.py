"""The verdict and the model images of ``cfsx interpret`` (issue 26), measured on images cfsx did not make.

Positive cases: clean images of the generalisation benchmark (benchmarks/generalisation_data.py; 8 lots of 32 x
32 and all lot origins) and exact ensemble images of Hamiltonians on the encoding's vectors (``ensemble_images``),
interpreted as ``interpret_images`` does (built-in general-cfs4, the least squares the
final answer for raw images). Negative controls, which no occupancy-correlation image should explain: smooth random
textures, benchmark images made non-centrosymmetric (times 1 + 0.6 sin 2 pi (a h + b k)), and benchmark structures
rendered with a wrong calibration (h and k scaled by 1.2-1.6). And the real ZrO2 plane through ``cfsx correct``
(F lattice, every zone). Reports per set the verdicts, the ceilings, the fit of the final answer's analytic and
structure images, and the structure images' noise; writes the marked block ``verdict`` of docs/interpretation.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

import generalisation_data as gd
import numpy as np
from harness import ROOT, ZRO2_PLANE, add_output, machine_line, markdown_table, replace_block

from cfsx.config import CorrectionConfig, InterpretationConfig, load_config
from cfsx.interpretation import interpret_images
from cfsx.interpretation.fit_quality import EXPLAINED, NOT_EXPLAINED, PARTLY

MODEL = "general-cfs4"
COMMAND = "make verdict"


def controls(data: dict, count: int, seed: int) -> dict[str, np.ndarray]:
    """The negative controls: textures, non-centrosymmetric and miscalibrated images (module docstring)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grid = gd.reciprocal_axis()
    h, k = np.meshgrid(grid, grid, indexing="ij")
    textures, odd, scaled = [], [], []
    for index in range(count):
        texture = ndimage.gaussian_filter(rng.normal(size=(64, 64)), rng.uniform(1.0, 4.0), mode="wrap")
        textures.append(texture - texture.min() + 0.2 * texture.std())
        image = data["images_clean"][index]
        odd.append(image * (1 + 0.6 * np.sin(2 * np.pi * (h * rng.integers(1, 3) + k * rng.integers(0, 3)))))
        factor = rng.uniform(1.2, 1.6)
        scaled.append(gd.warren_cowley_image(data["alpha_wide"][index], data["concentration"][index], grid * factor,
                                             grid * factor))  # fmt: skip
    return {"texture": np.array(textures), "not centrosymmetric": np.array(odd), "miscalibrated": np.array(scaled)}


def ensemble_images(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Exact ensemble images (what a large crystal gives): per Hamiltonian on the encoding's own vectors (couplings
    uniform in [-1, 1] times a strength log-uniform in 0.02-0.3), the correlations of 4 lattices of 128 x 128
    equilibrated 200 sweeps and sampled 4 times 25 sweeps apart, averaged and summed as a Warren-Cowley series over
    every displacement up to 31 (no lot window)."""
    from cfsx.physics.engine import autocorrelation, cosine_transform, metropolis_sweeps, random_lattice, seed_state

    rng = np.random.default_rng(seed)
    images = []
    for case in range(count):
        couplings = rng.uniform(-1, 1, len(vectors)) * np.exp(rng.uniform(np.log(0.02), np.log(0.3)))
        gammas = []
        for replica in range(4):
            state = seed_state(1000 * case + replica)
            lattice, state = random_lattice(128, 0.5, state)
            lattice, state, _ = metropolis_sweeps(lattice, vectors, couplings, 200, state)
            for _ in range(4):
                lattice, state, _ = metropolis_sweeps(lattice, vectors, couplings, 25, state)
                gammas.append(autocorrelation(lattice))
        gamma = np.mean(gammas, axis=0)
        displacements = np.arange(-31, 32)
        images.append(cosine_transform(displacements, gamma[np.ix_(displacements % 128, displacements % 128)], 64,
                                       1.0))  # fmt: skip
    return np.array(images)


def summarise(name: str, interpretations: list) -> dict:
    labels = Counter(item.verdict.label for item in interpretations)
    ranges = np.array([item.ceilings.range_r2 for item in interpretations])
    periodic = np.array([item.ceilings.periodic_r2 for item in interpretations])
    finals = [item.fits[item.final_source] for item in interpretations]
    analytic = np.array([fit.analytic.r2 for fit in finals])
    structure = np.array([fit.structure.r2 for fit in finals if fit.structure is not None])
    noise = np.array([fit.structure.noise for fit in finals if fit.structure is not None and fit.structure.noise])
    share = structure / ranges[: len(structure)] if len(structure) else np.array([])
    reasons = Counter(
        re.sub(r"-?\d+\.\d+", "x", reason.split(" (")[0].split(":")[0])
        for item in interpretations
        for reason in item.verdict.reasons
    )
    return {"set": name, "images": len(interpretations), "labels": labels, "range": np.median(ranges),
            "periodic": np.median(periodic), "analytic": np.median(analytic),
            "structure": np.median(structure) if len(structure) else None,
            "structure_share": np.median(share) if len(share) else None,
            "noise": np.median(noise) if len(noise) else None, "reasons": reasons}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("bench-output/generalisation-data"))
    parser.add_argument("--images", type=int, default=60, help="clean images per group and controls per kind")
    parser.add_argument("--decoded", type=int, default=24, help="of those, images also decoded (structure images)")
    parser.add_argument("--realdata", default=str(ZRO2_PLANE))
    add_output(parser, ROOT / "docs" / "interpretation.md", help_text=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    undecoded = InterpretationConfig()
    undecoded = type(undecoded)(decode=type(undecoded.decode)(replicates=0))
    decoded = InterpretationConfig()
    rows = []
    for group in ("n64-l32-k8", "n64-l32-kall"):
        path = args.data / f"{group}.h5"
        if not path.exists():
            gd.main(["--output", str(args.data), "--groups", group])
        data = gd.load_group(path)
        images = data["images_clean"][: args.images]
        results = interpret_images(MODEL, images, undecoded, workers=args.workers)
        rows.append(summarise(f"clean {group}", results))
        structure = interpret_images(MODEL, images[: args.decoded], decoded, workers=args.workers)
        rows.append(summarise(f"clean {group}, decoded", structure))
        if group == "n64-l32-k8":
            for name, control in controls(data, args.images, 26).items():
                rows.append(summarise(name, interpret_images(MODEL, control, undecoded, workers=args.workers)))
    from cfsx.learning.builtin import resolve_model
    from cfsx.learning.model_card import read_model_card

    vectors = read_model_card(resolve_model(MODEL)).vectors
    ensemble = ensemble_images(vectors, 30, 27)
    rows.append(
        summarise("exact ensemble images (30)", interpret_images(MODEL, ensemble, decoded, workers=args.workers))
    )
    zro2 = None
    if Path(args.realdata).exists():
        from cfsx.interpretation import InterpretationOutput, interpret

        correction = load_config("correct", ["geometry.lattice=F", "mask.edge=2"], root=CorrectionConfig)
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            result = interpret(MODEL, [args.realdata], InterpretationOutput(Path(folder) / "out"), decoded, correction,
                               workers=args.workers)  # fmt: skip
        zro2 = result.interpretations[0]
        rows.append(summarise("ZrO2 (F lattice, every zone)", [zro2]))
    seconds = time.perf_counter() - started

    def number(value) -> str:
        return "-" if value is None else f"{value:.2f}"

    table = markdown_table(
        ("set", "images", EXPLAINED, PARTLY, NOT_EXPLAINED, "range ceiling", "periodic ceiling",
         "final: analytic R2", "final: structure R2", "structure R2 / range ceiling", "structure image noise"),
        [(row["set"], str(row["images"]), str(row["labels"][EXPLAINED]), str(row["labels"][PARTLY]),
          str(row["labels"][NOT_EXPLAINED]), number(row["range"]), number(row["periodic"]), number(row["analytic"]),
          number(row["structure"]), number(row["structure_share"]),
          "-" if row["noise"] is None else f"{100 * row['noise']:.1f} %") for row in rows],
    )  # fmt: skip
    reasons = "\n".join(
        f"- {row['set']}: " + ", ".join(f"{reason} ({count})" for reason, count in row["reasons"].most_common())
        for row in rows
        if row["reasons"]
    )
    negatives = [row for row in rows if row["set"] in ("texture", "not centrosymmetric", "miscalibrated")]
    caught = sum(row["labels"][NOT_EXPLAINED] for row in negatives)
    total = sum(row["images"] for row in negatives)
    clean_not = sum(row["labels"][NOT_EXPLAINED] for row in rows if row["set"].startswith(("clean", "exact")))
    text = "\n\n".join([
        f"{machine_line(COMMAND)} {seconds / 60:.1f} minutes; model {MODEL}, medians per set (columns 6-11).",
        table,
        f"Negative controls judged `not explained`: {caught} of {total} ({100 * caught / max(total, 1):.0f} %); "
        f"clean benchmark images judged `not explained`: {clean_not}."
        + ("" if zro2 is None else f" ZrO2: `{zro2.verdict.label}`: {'; '.join(zro2.verdict.reasons)}."),
        "Reasons given (their first words; x stands for a number):\n\n" + reasons,
    ])  # fmt: skip
    replace_block(args.output, "verdict", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
