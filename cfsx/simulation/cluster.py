"""Running simulation batches on a dask.distributed cluster.

``cfsx simulate --scheduler ADDRESS`` (or ``--scheduler-file PATH``) hands each batch of samples
to Dask as one task; results come back as they complete and are checkpointed to disk by the
caller exactly as with the local process pool, so memory stays bounded and ``--resume`` works.
A batch's samples are fixed by their seeds, so a task re-run after a worker dies gives the same
result: Dask re-schedules the tasks of a lost worker by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cfsx.errors import ClusterError, ConfigError
from cfsx.io.samples import Samples

BatchDone = Callable[[int, int, Samples], None]


@dataclass(frozen=True)
class Scheduler:
    """Where the Dask scheduler is: an address (tcp://host:8786) or a scheduler file."""

    address: str | None = None
    scheduler_file: Path | None = None
    timeout: float = 30.0  # seconds to wait for the connection

    def __post_init__(self) -> None:
        if (self.address is None) == (self.scheduler_file is None):
            raise ConfigError("give either a scheduler address or a scheduler file, not both")
        if self.scheduler_file is not None and not Path(self.scheduler_file).is_file():
            raise ConfigError(f"scheduler file not found: {self.scheduler_file}")


@contextmanager
def connect(scheduler: Scheduler) -> Iterator:
    """A distributed.Client for the scheduler, with one clear error when it cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("Dask is not installed: pip install 'cfsx[cluster]'") from None
    try:
        if scheduler.address is not None:
            client = Client(scheduler.address, timeout=scheduler.timeout, set_as_default=False)
        else:
            client = Client(scheduler_file=str(scheduler.scheduler_file), timeout=scheduler.timeout,
                            set_as_default=False)  # fmt: skip
    except (OSError, TimeoutError, ValueError) as error:
        where = scheduler.address or scheduler.scheduler_file
        raise ClusterError(f"cannot connect to the Dask scheduler at {where}: {error}") from None
    try:
        yield client
    finally:
        client.close()


def run_batches(
    scheduler: Scheduler,
    task: Callable[[int, int], Samples],
    batches: list[tuple[int, int]],
    on_done: BatchDone,
) -> None:
    """Run ``task(start, stop)`` for every batch on the cluster; call ``on_done`` as each completes.

    At most two tasks per worker thread are in flight, so neither the scheduler nor this process
    holds more than a few batches at a time, whatever the number of samples.
    """
    from distributed import as_completed

    with connect(scheduler) as client:
        slots = max(1, sum(client.nthreads().values()))
        run_id = uuid.uuid4().hex[:12]
        queue = list(batches)
        ranges = {}

        def submit():
            start, stop = queue.pop(0)
            future = client.submit(task, start, stop, key=f"cfsx-simulate-{run_id}-{start}", pure=False)
            ranges[future.key] = (start, stop)
            return future

        if not queue:
            return
        running = as_completed([submit() for _ in range(min(len(queue), 2 * slots))], loop=client.loop)
        try:
            for future in running:
                start, stop = ranges.pop(future.key)
                on_done(start, stop, future.result())
                future.release()
                if queue:
                    running.add(submit())
        except BaseException:
            client.cancel(list(running.futures))
            raise
