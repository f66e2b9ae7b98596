"""How many CPUs cfsx may use: what a workstation, taskset or a batch system grants this process."""

from __future__ import annotations

import os

from cfsx.errors import ConfigError


def available_cpus() -> int:
    """The CPUs this process may use: its CPU affinity (taskset, a batch system's cgroup), and no more than
    SLURM_CPUS_PER_TASK when a Slurm job sets it. The default for worker processes and TensorFlow's threads."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) >= 1:
        count = min(count, int(slurm))
    return max(count, 1)


def limit_blas_threads() -> None:
    """BLAS (NumPy's, SciPy's) to available_cpus() threads: it starts one per core of the machine otherwise."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=available_cpus(), user_api="blas")


def worker_count(workers: int | None) -> int:
    """The number of worker processes: the available CPUs unless given; refuse fewer than one."""
    if workers is None:
        return available_cpus()
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    return workers
