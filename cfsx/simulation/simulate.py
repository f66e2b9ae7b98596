"""``cfsx simulate``: a dataset of samples, in batches on worker processes, checkpointed so that a killed run resumes
to the same bytes, optionally as one shard of a larger run."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cfsx.config import SimulationConfig
from cfsx.errors import ClusterError, ConfigError, DataError
from cfsx.io import checkpoint, dataset
from cfsx.io.dataset_info import ReachSummary, reach_summary
from cfsx.io.outputs import claim_outputs, output_failure, writing
from cfsx.io.samples import SAMPLE_PATHS, Samples
from cfsx.physics.encoding import cfs_vectors
from cfsx.simulation.cluster import Scheduler, run_batches
from cfsx.simulation.sample import simulate_batch
from cfsx.simulation.workers import check_memory, check_run_options, run_local

log = logging.getLogger(__name__)


ProgressCallback = Callable[[int, int], None]  # (samples done, samples in this run)


@dataclass(frozen=True)
class Shard:
    """Part i of N of a run (``--shard i/N``): a contiguous range of the sample indices."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'i/N' with 0 <= i < N."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like i/N (for example 0/4), got {text!r}") from None
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"--shard {text}: need 0 <= i < N")
        return cls(index, count)

    def sample_range(self, total: int) -> tuple[int, int]:
        return self.index * total // self.count, (self.index + 1) * total // self.count


@dataclass(frozen=True)
class SimulationReport:
    """What ``simulate`` wrote: the file, its samples (how many resumed), time and feedback reach."""

    output: Path
    samples: int
    resumed_samples: int
    seconds: float
    reach: ReachSummary

    def summary(self) -> str:
        """What ``cfsx simulate`` prints: the file written, and how closely the feedback reached the targets."""
        resumed = f" ({self.resumed_samples} from checkpoints)" if self.resumed_samples else ""
        return (
            f"wrote {self.samples} samples to {self.output} in {self.seconds:.1f} s{resumed}\n" + self.reach.summary()
        )


def _checkpoint_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


SIMULATION_FILES = r"manifest\.json|batch-\d{10}(\.tmp)?\.npz"  # what a run writes into OUTPUT.parts/


def _batch_file(parts: Path, start: int) -> Path:
    return parts / f"batch-{start:010d}.npz"


def _prepare_checkpoints(parts: Path, manifest: dict, resume: bool) -> None:
    manifest_file = parts / "manifest.json"
    if parts.exists() and resume:
        try:
            existing = json.loads(manifest_file.read_text())
        except (OSError, ValueError):
            raise DataError(f"cannot resume: {manifest_file} is missing or corrupt") from None
        if existing != manifest:
            raise DataError(f"cannot resume: {parts} belongs to a run with another config, seed or shard")
        return
    checkpoint.clear(parts, SIMULATION_FILES)
    parts.mkdir()
    manifest_file.write_text(json.dumps(manifest, indent=1))


# Checkpointed batches of cfsx before the Samples record named the labels by their path in the file.
LEGACY_BATCH_NAMES = {"encodings__achieved": "achieved", "encodings__target": "target"}


def _save_batch(parts: Path, start: int, samples: Samples) -> None:
    path = _batch_file(parts, start)
    temporary = path.with_suffix(".tmp.npz")
    try:
        with writing(path):
            np.savez(temporary, **samples.present())
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _load_batch(parts: Path, start: int) -> Samples:
    with np.load(_batch_file(parts, start)) as data:
        names = {LEGACY_BATCH_NAMES.get(name, name): name for name in data.files}
        return Samples(**{field: data[names[field]] for field in SAMPLE_PATHS if field in names})


def _completed_batches(parts: Path, batches: list[tuple[int, int]]) -> set[int]:
    done = set()
    for start, stop in batches:
        path = _batch_file(parts, start)
        if not path.exists():
            continue
        try:
            with np.load(path) as data:
                if len(data["seeds"]) == stop - start:
                    done.add(start)
        except (OSError, ValueError, KeyError):
            path.unlink()  # a checkpoint cut short by a kill: redo that batch
    return done


def simulate(
    config: SimulationConfig,
    output: str | Path,
    *,
    workers: int | None = None,
    resume: bool = False,
    shard: Shard | None = None,
    progress: ProgressCallback | None = None,
    scheduler: Scheduler | None = None,
) -> SimulationReport:
    """Run the simulation described by ``config`` and write the dataset to ``output``.

    Batches run in a local process pool of ``workers``, or on a Dask cluster with ``scheduler``.
    """
    output = Path(output)
    workers = check_run_options(output, workers)
    check_memory(config, 1 if scheduler is not None else workers)
    with claim_outputs(files=[output]):
        try:
            return _simulate(config, output, workers, resume, shard, progress, scheduler)
        except OSError as error:  # checkpoints in OUTPUT.parts/: the full disk or quota of the output's folder
            failure = output_failure(error, error.filename or _checkpoint_dir(output))
            if failure is None:
                raise
            raise failure from None


def _simulate(
    config: SimulationConfig,
    output: Path,
    workers: int,
    resume: bool,
    shard: Shard | None,
    progress: ProgressCallback | None,
    scheduler: Scheduler | None,
) -> SimulationReport:
    total = config.run.samples
    first, last = shard.sample_range(total) if shard else (0, total)
    if last <= first:
        raise ConfigError(f"shard {shard.index}/{shard.count} of {total} samples is empty")
    size = config.run.batch_size
    batches = [(start, min(start + size, last)) for start in range(first, last, size)]
    parts = _checkpoint_dir(output)
    manifest = {"config": config.to_yaml(), "sample_start": first, "sample_stop": last}
    _prepare_checkpoints(parts, manifest, resume)
    done = _completed_batches(parts, batches)
    resumed = sum(stop - start for start, stop in batches if start in done)
    todo = [batch for batch in batches if batch[0] not in done]
    n_samples = last - first
    log.info("%s: samples %d-%d in %d batches of %d, %d workers; %d samples from checkpoints in %s",
             output, first, last - 1, len(batches), size, workers, resumed, parts)  # fmt: skip
    if progress:
        progress(resumed, n_samples)

    began = time.perf_counter()
    finished = resumed

    def on_done(start: int, stop: int, arrays: Samples) -> None:
        nonlocal finished
        _save_batch(parts, start, arrays)
        finished += stop - start
        log.debug("samples %d-%d done (%d of %d)", start, stop - 1, finished, n_samples)
        if progress:
            progress(finished, n_samples)

    try:
        if scheduler is not None:
            run_batches(scheduler, functools.partial(simulate_batch, config), todo, on_done)
        else:
            run_local(config, todo, workers, on_done)
    except ClusterError:
        if not resume and finished == resumed:  # nothing done: leave no checkpoint directory behind
            checkpoint.clear(parts, SIMULATION_FILES, refuse_foreign=False)
        raise
    seconds = time.perf_counter() - began

    reach = _write(config, output, shard, (first, last), batches)
    return SimulationReport(output, n_samples, resumed, seconds, reach)


def _write(config: SimulationConfig, output: Path, shard: Shard | None, samples: tuple[int, int],
           batches: list[tuple[int, int]]):  # fmt: skip
    """The dataset from the checkpointed batches of samples [first, last), and how well its targets were reached;
    the checkpoints go once it is written."""
    first, last = samples
    parts = _checkpoint_dir(output)
    vectors = cfs_vectors(config.encoding.cfs)
    attrs = {
        "config": config.to_yaml(),
        "cfs": config.encoding.cfs,
        "vectors": vectors,
        "seed": config.run.seed,
        "samples_total": config.run.samples,
    }
    if shard:
        attrs.update(shard_index=shard.index, shard_count=shard.count, sample_start=first, sample_stop=last)
    n, m, d = config.lattice.size, config.diffraction.image_size, len(vectors)
    shapes = {
        "seeds": (),
        "images": (m, m),
        "achieved": (d,),
        "target": (d,),
        "interactions": (d,),
        "cycles": (),
        "stop_reasons": (),
    }
    if config.output.store_lattices:
        shapes["lattices"] = (n, n)
    labels, targets, cycles, stops = [], [], [], []

    def read_batches():
        for start, _ in batches:
            samples = _load_batch(parts, start)
            labels.append(samples.achieved)
            targets.append(samples.target)
            cycles.append(samples.cycles)
            stops.append(samples.stop_reasons)
            yield samples

    dataset.write_dataset(
        output,
        attrs=attrs,
        n_samples=last - first,
        shapes=shapes,
        batches=read_batches(),
        compression=config.output.compression,
    )
    checkpoint.clear(parts, SIMULATION_FILES, refuse_foreign=False)
    return reach_summary(
        np.concatenate(labels), np.concatenate(targets), np.concatenate(cycles),
        config.feedback.tolerance_for(config.lattice.size), np.concatenate(stops),
    )  # fmt: skip
