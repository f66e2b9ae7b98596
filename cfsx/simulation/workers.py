"""Where simulations run: worker processes that die with their parent, how many, and whether memory allows them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from cfsx.config import SimulationConfig
from cfsx.errors import ConfigError
from cfsx.io.cpus import worker_count
from cfsx.io.outputs import check_output
from cfsx.physics.encoding import cfs_vectors
from cfsx.simulation.cluster import BatchDone
from cfsx.simulation.sample import simulate_batch

PR_SET_PDEATHSIG = 1  # prctl option: a signal for this process when its parent dies (Linux)


def run_local(config: SimulationConfig, todo: list[tuple[int, int]], workers: int, on_done: BatchDone) -> None:
    """Run batches in this process (one worker) or in a pool of spawned processes."""
    if workers == 1 or len(todo) <= 1:
        for start, stop in todo:
            on_done(start, stop, simulate_batch(config, start, stop))
        return
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=worker_init, initargs=(os.getpid(),)) as pool:
        pending = {}
        queue = list(todo)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * workers:  # bounded memory in flight
                    start, stop = queue.pop(0)
                    pending[pool.submit(simulate_batch, config, start, stop)] = (start, stop)
                completed, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in completed:
                    start, stop = pending.pop(future)
                    on_done(start, stop, future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def worker_init(parent: int) -> None:
    """Set up a pool worker of process ``parent``: leave Ctrl-C and SIGTERM (sent to a whole job by batch
    systems) to it, and end with it, also when it is killed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # Linux: the kernel signals us when the parent dies
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died while this worker was starting
        os._exit(1)

    def watch_parent() -> None:  # elsewhere (and as a fallback): poll for the parent
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True, name="cfsx-parent-watch").start()


def check_run_options(output: Path, workers: int | None) -> int:
    """Refuse an unusable output path or worker count; return the worker count to use."""
    check_output(output)
    return worker_count(workers)


def memory_estimate(config: SimulationConfig, workers: int) -> int:
    """Bytes a local run needs at its peak: batches being made and stacked in every worker, finished
    batches waiting in the main process, and the engine's working arrays."""
    size, image = config.lattice.size, config.diffraction.image_size
    sample = 4 * image * image + size * size + 64 * len(cfs_vectors(config.encoding.cfs))
    batch = 2 * min(config.run.batch_size, config.run.samples) * sample  # the samples and their stacked copy
    engine_scratch = 32 * image * image + 64 * size * size
    return batch * (2 * workers + 2) + workers * engine_scratch


def available_memory() -> int | None:
    """Bytes this process may still use: the smaller of MemAvailable and the cgroup limit (None if unknown)."""
    limits = []
    with contextlib.suppress(OSError, ValueError, StopIteration):
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemAvailable:"))
        limits.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            limits.append(int(limit) - used)
    return min(limits) if limits else None


def check_memory(config: SimulationConfig, workers: int) -> None:
    """Refuse a run whose batches cannot fit in memory, naming the setting to lower.

    Batches are not shrunk silently: the checkpoints of OUTPUT.parts/ and --resume depend on their size.
    """
    needed, available = memory_estimate(config, workers), available_memory()
    if available is None or needed <= available:
        return
    batch = min(config.run.batch_size, config.run.samples)
    fitting = max(0, batch * available // needed)
    gib = 2**30
    raise ConfigError(
        f"this run needs about {needed / gib:.1f} GiB of memory ({workers} workers, batches of {batch} samples of "
        f"{config.diffraction.image_size} x {config.diffraction.image_size} images), {available / gib:.1f} GiB are "
        "available: lower run.batch_size"
        + (f" (to {fitting} or less)" if fitting >= 1 else "")
        + ", diffraction.image_size or --workers"
    )
