"""cfsx interpret speed: one raw detector image end to end, CNN-only batches, refinement per image.

A CFS4 small model is trained for one epoch on a few standard-settings samples (speed does not
depend on how well it is trained); the raw image is a 512 x 512 synthetic detector image with
every corruption of cfsx/detector.py. Timings are the best of three runs after a warm-up, in
this process (TensorFlow imported once, as in a batch job; each run reads the model file); the
cold command line, which also starts Python and imports TensorFlow, is timed once.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
from harness import add_output, best_of, machine_line, markdown_table, replace_block, run_cfsx

from cfsx.config import CorrectionConfig, InterpretationConfig, TrainingConfig, load_config
from cfsx.interpretation import interpret
from cfsx.learning.models import load_model, predict_encodings
from cfsx.learning.training import train
from cfsx.physics.encoding import cfs_vectors, transpose_permutation
from cfsx.simulation import simulate
from cfsx.simulation.detector import CORRUPTIONS, Detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_output(parser)
    parser.add_argument("--batch", type=int, default=4096, help="images of the CNN-only batch")
    parser.add_argument("--refined", type=int, default=4, help="images refined")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = run(Path(folder), args)
    table = markdown_table(("step", "measured", "target"), rows)
    print(table)
    if args.output:
        replace_block(args.output, "bench:interpretation", machine_line("make bench") + "\n\n" + table)


def run(folder: Path, args) -> list[tuple[str, str, str]]:
    simulate(load_config("cfs4", **{"run.samples": 64}), folder / "data.h5", workers=os.cpu_count())
    training = load_config("train", root=TrainingConfig, **{"fit.epochs": 1})
    train(folder / "data.h5", folder / "model.keras", training)
    with h5py.File(folder / "data.h5") as file:
        lattice = file["lattices"][0]
    detector = Detector()
    raw = detector.corrupt(detector.render(lattice, 25), set(CORRUPTIONS), np.random.default_rng(0), 3.0)
    np.save(folder / "detector.npy", raw)
    correction = load_config("correct", detector.correction_overrides(), root=CorrectionConfig)
    plain = load_config("interpret", root=InterpretationConfig)
    refined = load_config("interpret", root=InterpretationConfig, **{"refine.enabled": True, "output.figures": False})

    def one_image() -> None:
        interpret(folder / "model.keras", [str(folder / "detector.npy")], folder / "one", plain, correction)

    one_image()
    end_to_end = best_of(one_image)
    # Run in the temporary folder: the installed cfsx, not the source tree's.
    cold = run_cfsx("interpret", "--model", str(folder / "model.keras"), str(folder / "detector.npy"), "-o",
                    str(folder / "cold"), "--origin", "280,220", "--pixels-per-rlu", "160,160", "--correct-set",
                    "bragg.method=lattice", "--correct-set", "mask.zeros=values", cwd=folder)  # fmt: skip

    model, _ = load_model(folder / "model.keras")
    images = np.random.default_rng(0).gamma(2.0, 0.1, size=(args.batch, 64, 64)).astype(np.float32)
    with h5py.File(folder / "batch.h5", "w") as file:  # as cfsx correct writes them
        file.attrs.update(format="cfsx-dataset", format_version=1, kind="corrected", h_max=1.0)
        file["images"] = images
    cnn_only = load_config("interpret", root=InterpretationConfig, **{"decode.replicates": 0, "output.figures": False})

    def whole_batch() -> None:
        interpret(folder / "model.keras", [str(folder / "batch.h5")], folder / "batch", cnn_only, CorrectionConfig())

    whole_batch()
    batch_seconds = best_of(whole_batch)
    permutation = transpose_permutation(cfs_vectors(4))
    predict_encodings(model, images[:256], permutation, 256)
    with_transpose = best_of(lambda: predict_encodings(model, images, permutation, 256))
    without = best_of(lambda: predict_encodings(model, images, None, 256))

    simulate(load_config("cfs4", **{"run.samples": args.refined, "run.seed": 7}), folder / "unseen.h5", workers=1)
    result = interpret(folder / "model.keras", [str(folder / "unseen.h5")], folder / "refined", refined,
                       CorrectionConfig(), workers=1)  # fmt: skip
    per_image = result.seconds["refine"] / args.refined
    evaluations = np.mean(
        [
            r["refinement"][s]["decoded_evaluations"]
            for r in result.document["images"]
            for s in ("from_cnn", "from_zero")
        ]
    )
    settings = refined.refine
    builtin = builtin_rows(folder, images, correction, plain)
    return [
        ("one 512 x 512 detector image end to end (model, correct, CNN, least squares, 4 decodes of each, figure)",
         f"{end_to_end:.2f} s", "< 2 s"),
        ("the same from the command line (Python start, TensorFlow import, model load)", f"{cold:.1f} s", "-"),
        (f"CNN only, batches of 256, {args.batch} images, with the transposed view",
         f"{args.batch / with_transpose:.0f} images/s", ">= 1000 images/s"),
        ("CNN only, without the transposed view", f"{args.batch / without:.0f} images/s", "-"),
        (f"`cfsx interpret --replicates 0 --no-figures` on an .h5 of {args.batch} images (read the model and "
         "the file, CNN with the transposed view, results.json and .h5)", f"{args.batch / batch_seconds:.0f} images/s",
         ">= 1000 images/s"),
        (f"refinement, CFS4 standard settings, from the CNN and from zero ({settings.seeds} seeds, "
         f"{settings.decoded_iterations} Gauss-Newton trials; {evaluations:.0f} decoded evaluations per start)",
         f"{per_image:.1f} s per image", "< 30 s"),
        *builtin,
    ]  # fmt: skip


def builtin_rows(folder: Path, images: np.ndarray, correction, plain) -> list[tuple[str, str, str]]:
    """The same for the built-in general-cfs4 (issue 15's targets), when it is installed."""
    from cfsx.learning.builtin import DEFAULT_MODEL, builtin_model

    model_entry = builtin_model(DEFAULT_MODEL)
    if model_entry is None or not model_entry.path.is_file():
        return []
    without_decodes = load_config("interpret", root=InterpretationConfig, **{"decode.replicates": 0})

    def one_image(config) -> None:
        interpret(DEFAULT_MODEL, [str(folder / "detector.npy")], folder / "builtin-one", config, correction)

    one_image(plain)
    seconds = best_of(lambda: one_image(plain))
    cnn_seconds = best_of(lambda: one_image(without_decodes))
    model, card = load_model(DEFAULT_MODEL)
    permutation = transpose_permutation(card.vectors)
    predict_encodings(model, images[:256], permutation, 256)
    rate = len(images) / best_of(lambda: predict_encodings(model, images, permutation, 256))
    return [
        (f"{DEFAULT_MODEL} (built in): one 512 x 512 detector image end to end, as above", f"{seconds:.2f} s", "-"),
        (f"{DEFAULT_MODEL}: the same without decoding (model, correct, CNN, least squares, figure)",
         f"{cnn_seconds:.2f} s", "< 1 s"),
        (f"{DEFAULT_MODEL}: CNN only, batches of 256, {len(images)} images, with the transposed view",
         f"{rate:.0f} images/s", ">= 2500 images/s"),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
