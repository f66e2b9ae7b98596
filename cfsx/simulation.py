"""Make training data: random target encodings -> engine -> image/encoding pairs in a dataset.

Sample ``i`` of a run depends only on the config and its own seed, derived from
(run.seed, i); workers, shards and resumed runs therefore all give the same samples.
Finished batches are kept as checkpoint files in ``OUTPUT.parts/`` until the dataset is
assembled, so an interrupted run (Ctrl-C, kill -9) resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from . import dataset, engine
from .cluster import BatchDone, Scheduler, run_batches
from .config import SimulationConfig
from .cpus import available_cpus
from .encoding import cfs_vectors
from .errors import ClusterError, ConfigError, DataError
from .metrics import image_mse, scaled_image_r2
from .outputs import check_output, claim_outputs, output_failure, writing

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (samples done, samples in this run)
STOP_REACHED = engine.STOP_REASONS.index("reached")
PR_SET_PDEATHSIG = 1  # prctl option: a signal for this process when its parent dies (Linux)


def sample_seed(master_seed: int, index: int) -> int:
    """The 64-bit seed of sample ``index``: independent streams via NumPy's SeedSequence."""
    words = np.random.SeedSequence(master_seed, spawn_key=(index,)).generate_state(2, np.uint32)
    return int(words[0]) | (int(words[1]) << 32)


def sample_seeds(master_seed: int, count: int) -> list[int]:
    """The seeds of samples 0..count-1 of a run with ``master_seed``."""
    return [sample_seed(master_seed, i) for i in range(count)]


def simulate_sample(config: SimulationConfig, seed: int, target: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One sample: draw a target (or take the given one), reach it by feedback, and diffract the lattice.

    With ``targets.distribution: couplings`` the drawn target is the alpha of a lattice run at random
    fixed couplings, and that lattice is the sample (no feedback). With a given ``target`` this decodes
    an encoding into a structure and its image, always by the feedback; the random stream is then the
    same as for a uniform target, so the seed alone fixes the result.
    """
    vectors = cfs_vectors(config.encoding.cfs)
    targets, size = config.targets, config.lattice.size
    state = engine.seed_state(seed)
    concentration = config.lattice.concentration
    if config.lattice.concentration_range is not None and target is None:
        low, high = config.lattice.concentration_range
        uniform, state = engine.random_uniform(1, state)
        concentration = low + (high - low) * float(uniform[0])
    if targets.distribution == "couplings" and target is None:
        # Realisable by construction: the target is the alpha the lattice has after the fixed-coupling run,
        # so that lattice is the sample and the feedback has nothing to do (0 cycles, reached).
        uniform, state = engine.random_uniform(len(vectors) + 1, state)
        low, high = np.log(targets.coupling_range)
        couplings = np.exp(low + (high - low) * uniform[0]) * (2.0 * uniform[1:] - 1.0)
        lattice, state = engine.random_lattice(size, concentration, state)
        lattice, state, accepted = engine.metropolis_sweeps(lattice, vectors, couplings, targets.sweeps, state)
        target = engine.measure_alpha(lattice, vectors)
        result = engine.FeedbackResult(lattice, target, couplings, 0, accepted, state, STOP_REACHED)
    else:
        low, high = (np.array(bound) for bound in targets.bounds(len(vectors)))
        uniform, state = engine.random_uniform(len(vectors), state)
        if target is None:
            target = low + (high - low) * uniform
        else:
            target = np.asarray(target, dtype=np.float64)
            if target.shape != (len(vectors),):
                raise DataError(
                    f"an encoding for CFS{config.encoding.cfs} has {len(vectors)} components, got {target.shape}"
                )
        lattice, state = engine.random_lattice(size, concentration, state)
        result = run_feedback(config, lattice, target, state)
    diffraction = config.diffraction
    origins = np.zeros((0, 2), dtype=np.int32)  # n_lots: all uses every origin
    if diffraction.n_lots == "all":
        image = engine.all_lots_intensity(
            result.lattice, diffraction.lot_size, diffraction.image_size, diffraction.h_max
        )
    else:
        origins, _ = engine.random_origins(config.lattice.size, diffraction.n_lots, result.state)
        image = engine.lot_intensity(
            result.lattice, diffraction.lot_size, origins, diffraction.image_size, diffraction.h_max
        )
    return {
        "seeds": np.uint64(seed),
        "images": image.astype(np.float32),
        "encodings/achieved": result.achieved.astype(np.float32),
        "encodings/target": target.astype(np.float32),
        "interactions": result.couplings.astype(np.float32),
        "cycles": np.int32(result.cycles),
        "stop_reasons": np.uint8(result.reason),
        "lattices": result.lattice,
        "lot_origins": origins,  # not stored in datasets; for analyses of lot sampling
    }


def run_feedback(config: SimulationConfig, lattice: np.ndarray, target: np.ndarray, state: np.ndarray
                 ) -> engine.FeedbackResult:  # fmt: skip
    """The config's feedback loop from ``lattice`` towards ``target`` (stall noise: the lattice's own, 1/N)."""
    fb, size = config.feedback, config.lattice.size
    return engine.feedback(
        lattice,
        cfs_vectors(config.encoding.cfs),
        target,
        state,
        engine.FeedbackSettings(
            gain=fb.gain,
            sweeps_per_cycle=fb.sweeps_per_cycle,
            tolerance=fb.tolerance_for(size),
            max_cycles=fb.max_cycles,
            coupling_bound=fb.coupling_bound,
            stall_cycles=fb.stall_cycles,
            stall_noise=1.0 / size,
            adaptive=fb.update == "adaptive",
        ),
    )


def simulate_batch(config: SimulationConfig, start: int, stop: int) -> dict[str, np.ndarray]:
    """Samples start..stop-1 of a run, stacked."""
    samples = [simulate_sample(config, sample_seed(config.run.seed, i)) for i in range(start, stop)]
    return {name: np.stack([s[name] for s in samples]) for name in dataset.SAMPLE_ARRAYS}


def _run_local(config: SimulationConfig, todo: list[tuple[int, int]], workers: int, on_done: BatchDone) -> None:
    """Run batches in this process (one worker) or in a pool of spawned processes."""
    if workers == 1 or len(todo) <= 1:
        for start, stop in todo:
            on_done(start, stop, simulate_batch(config, start, stop))
        return
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
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


def _decode_chunk(config: SimulationConfig, targets: np.ndarray, seeds: list[int]) -> list[dict[str, np.ndarray]]:
    return [simulate_sample(config, seed, target) for target, seed in zip(targets, seeds, strict=True)]


def decode(
    config: SimulationConfig,
    encodings: np.ndarray,
    master_seed: int,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    seeds: list[int] | None = None,
) -> dict[str, np.ndarray]:
    """Simulate a structure and its image for each encoding (K, D), sample i with sample_seed(master_seed, i)
    or with ``seeds[i]`` when given.

    Encodings are clipped to [-1, 1], the range of alpha. Results are stacked as in a dataset.
    """
    encodings = np.clip(np.asarray(encodings, dtype=np.float64), -1.0, 1.0)
    if encodings.ndim != 2 or not np.all(np.isfinite(encodings)):
        raise DataError(f"encodings to decode must be a finite (K, D) array, got shape {encodings.shape}")
    if seeds is None:
        seeds = sample_seeds(master_seed, len(encodings))
    elif len(seeds) != len(encodings):
        raise DataError(f"{len(seeds)} seeds for {len(encodings)} encodings")
    chunks = [(start, min(start + 8, len(encodings))) for start in range(0, len(encodings), 8)]
    results: dict[int, list[dict[str, np.ndarray]]] = {}
    if workers <= 1 or len(chunks) <= 1:
        for start, stop in chunks:
            results[start] = _decode_chunk(config, encodings[start:stop], seeds[start:stop])
            if progress:
                progress(stop, len(encodings))
    else:
        context = get_context("spawn")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_init, initargs=(os.getpid(),)
        ) as pool:
            futures = {
                pool.submit(_decode_chunk, config, encodings[start:stop], seeds[start:stop]): start
                for start, stop in chunks
            }
            done = 0
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                done += len(results[futures[future]])
                if progress:
                    progress(done, len(encodings))
    samples = [sample for start, _ in chunks for sample in results[start]]
    return {name: np.stack([sample[name] for sample in samples]) for name in dataset.SAMPLE_ARRAYS}


def _worker_init(parent: int) -> None:
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
    reach: dataset.ReachSummary

    def summary(self) -> str:
        """What ``cfsx simulate`` prints: the file written, and how closely the feedback reached the targets."""
        resumed = f" ({self.resumed_samples} from checkpoints)" if self.resumed_samples else ""
        return (
            f"wrote {self.samples} samples to {self.output} in {self.seconds:.1f} s{resumed}\n" + self.reach.summary()
        )


def _checkpoint_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


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
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir()
    manifest_file.write_text(json.dumps(manifest, indent=1))


def _save_batch(parts: Path, start: int, arrays: dict[str, np.ndarray]) -> None:
    path = _batch_file(parts, start)
    temporary = path.with_suffix(".tmp.npz")
    try:
        with writing(path):
            np.savez(temporary, **{name.replace("/", "__"): value for name, value in arrays.items()})
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _load_batch(parts: Path, start: int) -> dict[str, np.ndarray]:
    with np.load(_batch_file(parts, start)) as data:
        return {name.replace("__", "/"): data[name] for name in data.files}


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


def worker_count(workers: int | None) -> int:
    """The number of worker processes: the available CPUs unless given; refuse fewer than one."""
    if workers is None:
        return available_cpus()
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    return workers


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
    config_yaml = config.to_yaml()
    parts = _checkpoint_dir(output)
    manifest = {"config": config_yaml, "sample_start": first, "sample_stop": last}
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

    def on_done(start: int, stop: int, arrays: dict[str, np.ndarray]) -> None:
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
            _run_local(config, todo, workers, on_done)
    except ClusterError:
        if not resume and finished == resumed:  # nothing done: leave no checkpoint directory behind
            shutil.rmtree(parts, ignore_errors=True)
        raise
    seconds = time.perf_counter() - began

    vectors = cfs_vectors(config.encoding.cfs)
    attrs = {
        "config": config_yaml,
        "cfs": config.encoding.cfs,
        "vectors": vectors,
        "seed": config.run.seed,
        "samples_total": total,
    }
    if shard:
        attrs.update(shard_index=shard.index, shard_count=shard.count, sample_start=first, sample_stop=last)
    n, m, d = config.lattice.size, config.diffraction.image_size, len(vectors)
    shapes = {
        "seeds": (),
        "images": (m, m),
        "encodings/achieved": (d,),
        "encodings/target": (d,),
        "interactions": (d,),
        "cycles": (),
        "stop_reasons": (),
    }
    if config.output.store_lattices:
        shapes["lattices"] = (n, n)
    labels, targets, cycles, stops = [], [], [], []

    def read_batches():
        for start, _ in batches:
            arrays = _load_batch(parts, start)
            labels.append(arrays["encodings/achieved"])
            targets.append(arrays["encodings/target"])
            cycles.append(arrays["cycles"])
            stops.append(arrays["stop_reasons"])
            yield arrays

    dataset.write_dataset(
        output,
        attrs=attrs,
        n_samples=n_samples,
        shapes=shapes,
        batches=read_batches(),
        compression=config.output.compression,
    )
    shutil.rmtree(parts)
    reach = dataset.reach_summary(
        np.concatenate(labels), np.concatenate(targets), np.concatenate(cycles),
        config.feedback.tolerance_for(config.lattice.size), np.concatenate(stops),
    )  # fmt: skip
    return SimulationReport(output, n_samples, resumed, seconds, reach)


@dataclass
class Decoded:
    """Replicates of the decoded structures: arrays (S, R, ...) and their scores against the observation."""

    images: np.ndarray
    lattices: np.ndarray
    achieved: np.ndarray
    interactions: np.ndarray
    cycles: np.ndarray
    seeds: np.ndarray  # (R,)
    image_r2: np.ndarray  # (S, R)
    image_mse: np.ndarray  # (S, R) in the engine's units (the observation divided by the scale)
    scale: np.ndarray  # (S, R) least-squares factor: observation ~ scale * decoded image
    # (S, R(R-1)/2): image R2 of one replicate against another, both decoded from the same encoding. The
    # best image R2 any encoding can reach against an image of these simulation settings: the floor.
    image_r2_floor: np.ndarray

    def image(self, index: int):
        """One image's replicates, a results.DecodedReplicates."""
        from .results import DecodedReplicates

        fields = {item.name: getattr(self, item.name)[index] for item in dataclasses.fields(DecodedReplicates)}
        return DecodedReplicates(**fields)


def decode_replicates(simulation, encodings: np.ndarray, observed: np.ndarray, seeds: list[int], workers: int,
                      progress: Callable[[str, int, int], None] | None = None) -> Decoded:  # fmt: skip
    """Decode every encoding once per seed (the same seeds for every image) and score each replicate."""
    count, replicates = len(encodings), len(seeds)
    report = (lambda done, total: progress("decode", done, total)) if progress else None  # (stage, done, total)
    out = decode(simulation, np.repeat(encodings, replicates, axis=0), 0, workers, report, seeds * count)
    images = out["images"].astype(np.float64)
    repeated = np.repeat(observed, replicates, axis=0)
    r2, scale = scaled_image_r2(repeated, images)
    mse = image_mse(repeated / np.where(scale > 0, scale, np.nan)[:, None, None], images)

    def shaped(array: np.ndarray) -> np.ndarray:
        return array.reshape(count, replicates, *array.shape[1:])

    first, second = np.triu_indices(replicates, k=1)
    decoded = shaped(images)
    floor = scaled_image_r2(decoded[:, first].reshape(-1, *images.shape[1:]),
                            decoded[:, second].reshape(-1, *images.shape[1:]))[0]  # fmt: skip
    return Decoded(
        images=shaped(out["images"]),
        lattices=shaped(out["lattices"]),
        achieved=shaped(out["encodings/achieved"]),
        interactions=shaped(out["interactions"]),
        cycles=shaped(out["cycles"]),
        seeds=np.asarray(seeds, dtype=np.uint64),
        image_r2=shaped(r2),
        image_mse=shaped(mse),
        scale=shaped(scale),
        image_r2_floor=floor.reshape(count, len(first)),
    )
