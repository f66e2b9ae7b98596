"""Training and inference throughput of both architectures on this CPU (images/s).

Random 64 x 64 images and 15 labels: throughput does not depend on the values. Each figure is
the best of three timed passes after a warm-up pass (graph tracing is excluded).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from harness import add_output, best_of, machine_line, markdown_table, replace_block

from cfsx.learning._tensorflow import keras, tf
from cfsx.learning.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_output(parser)
    parser.add_argument("--images", type=int, default=2048, help="images per timed pass")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.gamma(2.0, 0.1, size=(args.images, 64, 64)).astype(np.float32)
    labels = rng.uniform(-0.5, 0.5, size=(args.images, 15)).astype(np.float32)
    rows = []
    for architecture in ("small", "large"):
        keras.utils.set_random_seed(0)
        model = build_model(architecture, 64, 15)
        model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
        data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
        model.fit(data.take(8), epochs=1, verbose=0)
        seconds = best_of(lambda: model.fit(data, epochs=1, verbose=0))
        model.predict(images[:256], batch_size=256, verbose=0)
        inference = best_of(lambda: model.predict(images, batch_size=256, verbose=0))
        rows.append(
            (
                f"{architecture} ({model.count_params():,} parameters)",
                f"{args.images / seconds:.0f}",
                f"{args.images / inference:.0f}",
            )
        )
    threads = f"TensorFlow {tf.__version__} on {os.cpu_count()} cores"
    table = markdown_table(("model", "training, batch 32 (images/s)", "inference, batch 256 (images/s)"), rows)
    print(table)
    if args.output:
        replace_block(args.output, "bench:training", machine_line("make bench") + f" {threads}.\n\n" + table)


if __name__ == "__main__":
    main()
