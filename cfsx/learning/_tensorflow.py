"""TensorFlow and Keras, imported once and quietly.

TensorFlow's C++ start-up messages (oneDNN, CPU features) go straight to file descriptor 2 and
mean nothing to our users; they are silenced while TensorFlow loads. Import keras, tf, layers and ops
from here, never directly, so this happens before anything else touches TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


TENSORFLOW_MISSING = (
    "this needs TensorFlow, which is not installed: pip install 'cfsx[cpu]' (or 'cfsx[gpu]' for the CUDA build); "
    "simulate, merge, info and correct work without it"
)

with _quiet_stderr():
    try:
        import keras
        import tensorflow as tf
        from keras import layers, ops
    except ImportError:
        from cfsx.errors import MissingDependencyError

        raise MissingDependencyError(TENSORFLOW_MISSING) from None

    from cfsx.io.cpus import available_cpus

    # As many threads as this process has CPUs (taskset, SLURM_CPUS_PER_TASK), not as the machine has.
    tf.config.threading.set_intra_op_parallelism_threads(available_cpus())
    tf.config.threading.set_inter_op_parallelism_threads(available_cpus())

    # The first operation prints the rest of the start-up messages. Not in a multi-worker run:
    # its collective operations must be configured before TensorFlow's runtime starts.
    if "TF_CONFIG" not in os.environ:
        tf.constant(0.0) + 1.0

__all__ = ["keras", "layers", "ops", "tf"]
