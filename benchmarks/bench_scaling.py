"""Simulation throughput against the number of workers: local process pool and Dask.

Measures samples/s of ``cfsx.simulation.simulate`` (CFS4, the seed study's targets and loop) with 1 and 2
workers for the process pool and for a Dask LocalCluster of single-threaded worker processes,
and Dask's per-task overhead (a batch of no-op tasks). Writes its table into the marked block
of docs/scaling.md; the projection in that file is derived from these figures by hand.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster
from harness import SEED_STUDY_TARGETS, add_output, machine_line, markdown_table, replace_block

from cfsx.config import load_config
from cfsx.simulation import simulate
from cfsx.simulation.cluster import Scheduler


def no_op(value: int) -> int:
    return value


def task_overhead(client: Client, tasks: int = 2000) -> float:
    """Seconds per task for tasks that do nothing, submitted at once."""
    client.gather(client.map(no_op, range(100), pure=False))  # warm-up
    start = time.perf_counter()
    client.gather(client.map(no_op, range(tasks), pure=False))
    return (time.perf_counter() - start) / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_output(parser)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    # The seed study's loop (60 feedback cycles a sample), as docs/scaling.md measured it: long, even tasks.
    config = load_config("cfs4", SEED_STUDY_TARGETS[1::2], **{"run.samples": args.samples})
    rows = []
    per_sample = {}
    with tempfile.TemporaryDirectory() as folder:
        for workers in (1, 2):
            report = simulate(config, Path(folder) / f"pool{workers}.h5", workers=workers)
            rate = args.samples / report.seconds
            per_sample[("pool", workers)] = report.seconds / args.samples
            rows.append(("process pool", str(workers), f"{rate:.1f}", f"{rate / workers:.1f}", ""))
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=40) as cluster, Client(cluster) as client:  # fmt: skip
                overhead = task_overhead(client)
                report = simulate(config, Path(folder) / f"dask{workers}.h5",
                                  scheduler=Scheduler(address=cluster.scheduler_address))  # fmt: skip
            rate = args.samples / report.seconds
            per_sample[("dask", workers)] = report.seconds / args.samples
            rows.append(("Dask LocalCluster", str(workers), f"{rate:.1f}", f"{rate / workers:.1f}",
                         f"{overhead * 1e3:.2f} ms"))  # fmt: skip
    table = markdown_table(
        ("runner", "workers", "samples/s", "samples/s per worker", "Dask overhead per no-op task"), rows
    )
    batch = config.run.batch_size
    notes = (
        f"{args.samples} CFS4 samples at the standard settings, {batch} samples per task; time of "
        "`simulate()` from the first task to the last result (the final write of the .h5 file excluded). "
        f"One sample costs {per_sample[('pool', 1)] * 1e3:.0f} ms of one core."
    )
    print(table)
    print(notes)
    if args.output:
        replace_block(args.output, "bench:scaling", machine_line("make bench") + " " + notes + "\n\n" + table)


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
