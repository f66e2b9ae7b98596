"""Simulate on a Dask cluster whose workers are Slurm jobs (dask-jobqueue).

    pip install 'cfsx[cluster]'
    python simulate-dask.py cfs4 data.h5 --samples 200000 --jobs 16 --cores 8

The workers are started as Slurm jobs and must see the same Python environment (and cfsx) as
this script. Dask re-runs the tasks of a worker that dies; the output equals a local run.
"""

import argparse

from dask_jobqueue import SLURMCluster

from cfsx.config import load_config
from cfsx.simulation import simulate
from cfsx.simulation.cluster import Scheduler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("output")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--jobs", type=int, default=4, help="Slurm jobs, one Dask worker each")
    parser.add_argument("--cores", type=int, default=8, help="cores (single-threaded worker processes) per job")
    parser.add_argument("--walltime", default="02:00:00")
    args = parser.parse_args()

    config = load_config(args.config, **{"run.samples": args.samples})
    # One process per core: the engine is single-threaded Fortran.
    with SLURMCluster(cores=args.cores, processes=args.cores, memory=f"{2 * args.cores}GB",
                      walltime=args.walltime) as cluster:  # fmt: skip
        cluster.scale(jobs=args.jobs)
        report = simulate(config, args.output, scheduler=Scheduler(address=cluster.scheduler_address, timeout=600))
    print(f"wrote {report.samples} samples to {report.output} in {report.seconds:.0f} s")


if __name__ == "__main__":
    main()
