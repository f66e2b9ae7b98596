"""Make training data: random target encodings -> engine -> image/encoding pairs in a dataset.

Sample ``i`` of a run depends only on the config and its own seed, derived from
(run.seed, i); workers, shards and resumed runs therefore all give the same samples.
Finished batches are kept as checkpoint files in ``OUTPUT.parts/`` until the dataset is
assembled, so an interrupted run (Ctrl-C, kill -9) resumes where it stopped."""

from cfsx.simulation.decode import Decoded, decode, decode_replicates  # noqa: F401
from cfsx.simulation.sample import (  # noqa: F401
    STOP_REACHED,
    run_feedback,
    sample_seed,
    sample_seeds,
    simulate_batch,
    simulate_sample,
)
from cfsx.simulation.simulate import ProgressCallback, Shard, SimulationReport, simulate  # noqa: F401
from cfsx.simulation.workers import (  # noqa: F401
    PR_SET_PDEATHSIG,
    available_memory,
    check_memory,
    check_run_options,
    memory_estimate,
)
