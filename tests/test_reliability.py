"""Nothing lost, nothing harmed: outputs, locks, full disks, killed runs, broken and hostile inputs.

One test (or more) per group of the bad-input and fault campaign; the groups of cfsx correct
(large images, complex images, external links) are in test_correction.py.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.config import InterpretationConfig, load_config
from cfsx.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OUTPUT, EXIT_RESUMABLE, ConfigError, DataError, OutputError
from cfsx.io import dataset
from cfsx.io.outputs import OutputLock, lock_path
from cfsx.learning import models
from cfsx.simulation import check_memory, memory_estimate, simulate

runner = CliRunner()
TINY = ["--set", "lattice.size=16", "--set", "diffraction.lot_size=8", "--set", "diffraction.image_size=16"]


def one_line_error(result, code: int, *words: str) -> None:
    """The contract for bad input: the right exit code and one line that says what is wrong."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for word in words:
        assert word in result.output, result.output


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cfsx_process(*args: str, cwd: Path, **options) -> subprocess.Popen:
    """``cfsx ARGS`` in its own process; ``cwd`` away from the checkout, whose cfsx/ has no compiled engine."""
    return subprocess.Popen([sys.executable, "-m", "cfsx", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=cwd, **options)  # fmt: skip


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


# 1. Two runs on one output -------------------------------------------------------------------------


def test_a_second_run_on_a_locked_output_fails_at_once_and_names_the_holder(tmp_path):
    output = tmp_path / "mix.h5"
    first = cfsx_process("simulate", "demo", "-o", str(output), "--samples", "400", "--workers", "1", *TINY,
                         "--set", "run.batch_size=4", "--seed", "11", cwd=tmp_path)  # fmt: skip
    try:
        wait_for(lambda: lock_path(output).exists() and (output.with_name("mix.h5.parts") / "manifest.json").exists())
        holder = json.loads(lock_path(output).read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        second = runner.invoke(app, ["simulate", "demo", "-o", str(output), "--samples", "400", "--seed", "12"])
        one_line_error(second, EXIT_OUTPUT, "in use by another cfsx run", f"pid {first.pid}")
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert not lock_path(output).exists()
    reference = tmp_path / "alone.h5"
    simulate(load_config("demo", TINY[1::2] + ["run.samples=400", "run.batch_size=4", "run.seed=11"]), reference)
    with h5py.File(output) as mixed, h5py.File(reference) as alone:
        assert mixed.attrs["seed"] == 11
        assert np.array_equal(mixed["seeds"][()], alone["seeds"][()])
        assert np.array_equal(mixed["images"][()], alone["images"][()])


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    output = tmp_path / "data.h5"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock_path(output).write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "started": ""}))
    result = runner.invoke(app, ["simulate", "demo", "-o", str(output), "--samples", "4", *TINY])
    assert result.exit_code == 0, result.output
    assert output.is_file() and not lock_path(output).exists()


def test_a_lock_held_on_another_host_is_reported_never_stolen(tmp_path):
    output = tmp_path / "data.h5"
    held = json.dumps({"host": "node-17.cluster", "pid": 1234, "started": "99"})
    lock_path(output).write_text(held)
    result = runner.invoke(app, ["simulate", "demo", "-o", str(output), "--samples", "4", *TINY])
    one_line_error(result, EXIT_OUTPUT, "host node-17.cluster", "pid 1234", str(lock_path(output)))
    assert lock_path(output).read_text() == held and not output.exists()


def test_a_lock_is_exclusive_and_released(tmp_path):
    output = tmp_path / "x.h5"
    with OutputLock(output), pytest.raises(OutputError, match="in use"):
        OutputLock(output).acquire()
    assert not lock_path(output).exists()
    with OutputLock(output):  # free again
        pass


# 2, 3. Outputs that are not regular files, and outputs that are inputs -------------------------------


def test_a_device_or_pipe_as_output_is_refused_and_left_alone(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for target in (pipe, Path("/dev/full"), Path("/dev/null")):
        if not target.exists():
            continue
        before = target.stat()
        result = runner.invoke(app, ["simulate", "demo", "-o", str(target), "--samples", "4", *TINY])
        one_line_error(result, EXIT_OUTPUT, "not a regular file")
        after = target.stat()
        assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino


def test_standard_output_as_output_is_refused(tmp_path):
    result = runner.invoke(app, ["simulate", "demo", "-o", "-", "--samples", "4"])
    one_line_error(result, EXIT_OUTPUT, "standard output")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    config = load_config("demo", TINY[1::2] + ["run.samples=8"])
    from cfsx.simulation import Shard

    for index in range(2):
        simulate(config, folder / f"s{index}.h5", workers=1, shard=Shard(index, 2))
    return folder


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_merge_refuses_to_overwrite_one_of_its_shards(shards, tmp_path, alias):
    first = shards / "s0.h5"
    target = {"same": first, "symlink": tmp_path / "link.h5", "hardlink": shards / "hard.h5"}[alias]
    if alias == "symlink":
        target.symlink_to(first)
    elif alias == "hardlink":
        os.link(first, target)
    before = digest(first)
    try:
        result = runner.invoke(app, ["merge", str(first), str(shards / "s1.h5"), "-o", str(target)])
        one_line_error(result, EXIT_OUTPUT, "also an input")
        assert digest(first) == before
    finally:
        if alias == "hardlink":
            target.unlink()


def test_correct_train_and_interpret_refuse_an_output_that_is_an_input(shards, tmp_path, image_file):
    detector = tmp_path / "detector.h5"
    with h5py.File(detector, "w") as file:
        file["data"] = np.random.default_rng(1).uniform(1, 2, (32, 32))
    model = _model(tmp_path / "m.keras", outputs=3)
    store = tmp_path / "store.h5"
    shutil.copy(shards / "s0.h5", store)
    commands = [
        ["correct", f"{detector}::/data", "-o", str(detector)],
        ["train", str(store), "--init", str(model), "-o", str(model)],
        ["interpret", "--model", str(model), str(store), "-o", str(tmp_path / "out"), "--record", str(store)],
    ]
    for command in commands:
        before = {path: digest(path) for path in (detector, model, store)}
        one_line_error(runner.invoke(app, command), EXIT_OUTPUT, "also an input")
        assert {path: digest(path) for path in before} == before


def test_evaluate_refuses_a_report_directory_that_holds_its_data(shards, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "metrics.json").write_text("{}")  # an earlier report, which would be replaced
    data = report / "data.h5"
    shutil.copy(shards / "s0.h5", data)
    model = _model(tmp_path / "m.keras", outputs=3)
    result = runner.invoke(app, ["evaluate", str(model), str(data), "-o", str(report)])
    one_line_error(result, EXIT_OUTPUT, "holds the input")
    assert data.is_file()


# 4, 9. A full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only); skipped with the reason elsewhere."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_while_assembling_is_one_line_and_resume_after_freeing_space_is_exact(small_disk, tmp_path):
    output = small_disk / "x.h5"
    args = ["simulate", "demo", "-o", str(output), "--samples", "100", "--set", "output.compression=0",
            "--workers", "1"]  # fmt: skip
    failed = subprocess.run([sys.executable, "-m", "cfsx", *args], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)  # fmt: skip
    assert failed.returncode == EXIT_OUTPUT, failed.stderr  # not 139, a crash in libhdf5
    lines = failed.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: cannot write {output}: No space left on device"), failed.stderr
    assert len(lines) <= 2, failed.stderr  # the line, after a progress bar
    assert not output.exists() and not list(small_disk.glob(".x.h5.tmp*")) and not lock_path(output).exists()
    assert list((small_disk / "x.h5.parts").glob("batch-*.npz"))  # the finished batches survive
    subprocess.run(["mount", "-o", "remount,size=40m", str(small_disk)], check=True)
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    simulate(load_config("demo", ["run.samples=100", "output.compression=0"]), tmp_path / "clean.h5", workers=1)
    with h5py.File(output) as again, h5py.File(tmp_path / "clean.h5") as clean:
        for name in ("images", "encodings/achieved", "seeds", "lattices"):
            assert np.array_equal(again[name][()], clean[name][()]), name


def test_a_full_disk_for_checkpoints_names_the_checkpoint_folder(small_disk):
    output = small_disk / "y.h5"
    result = runner.invoke(app, ["simulate", "demo", "-o", str(output), "--samples", "256", "--workers", "1",
                                 "--set", "output.compression=0", "--set", "run.batch_size=64"])  # fmt: skip
    one_line_error(result, EXIT_OUTPUT, "No space left on device", "y.h5.parts")
    assert not output.exists() and not lock_path(output).exists()


def test_a_full_disk_while_saving_a_model_is_one_error_naming_it(small_disk):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (3 * 2**20 - 64 * 2**10))
    with pytest.raises(OutputError, match=f"cannot write {small_disk / 'm.keras'}: No space left on device"):
        _model(small_disk / "m.keras", outputs=3)
    assert not (small_disk / "m.keras").exists() and not list(small_disk.glob(".m.keras*"))


# 5. Workers end with their parent -------------------------------------------------------------------


def _session(session: int) -> set[int]:
    """The processes of a session: a run started in its own session, its workers and their helpers."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(status.read_text().rsplit(")", 1)[1].split()[3]) == session:
                found.add(int(status.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    output = tmp_path / "k.h5"
    run = cfsx_process("simulate", "demo", "-o", str(output), "--samples", "2000", "--workers", "2", *TINY,
                       "--set", "run.batch_size=4", start_new_session=True, cwd=tmp_path)  # fmt: skip
    parts = tmp_path / "k.h5.parts"
    wait_for(lambda: len(list(parts.glob("batch-*.npz"))) >= 2)
    assert len(_session(run.pid)) >= 3  # the run, its workers and the resource tracker
    run.send_signal(signal.SIGKILL)
    run.wait()
    try:
        wait_for(lambda: not _session(run.pid), timeout=15)
    finally:
        for pid in _session(run.pid):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_to_the_whole_job_stops_it_resumably_with_exit_5(tmp_path):
    """What a batch system does at the time limit: SIGTERM to every process of the job."""
    output = tmp_path / "t.h5"
    args = ["simulate", "demo", "-o", str(output), "--samples", "600", *TINY, "--set", "run.batch_size=4"]
    run = cfsx_process(*args, "--workers", "2", start_new_session=True, cwd=tmp_path)
    wait_for(lambda: len(list((tmp_path / "t.h5.parts").glob("batch-*.npz"))) >= 2)
    os.killpg(run.pid, signal.SIGTERM)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == EXIT_RESUMABLE, out
    assert "Traceback" not in out and "--resume" in out and not output.exists()
    wait_for(lambda: not _session(run.pid), timeout=15)
    resumed = runner.invoke(app, [*args, "--workers", "1", "--resume"])
    assert resumed.exit_code == 0 and "from checkpoints" in resumed.output, resumed.output
    simulate(load_config("demo", TINY[1::2] + ["run.samples=600", "run.batch_size=4"]), tmp_path / "clean.h5")
    with h5py.File(output) as again, h5py.File(tmp_path / "clean.h5") as clean:
        assert np.array_equal(again["images"][()], clean["images"][()])


def test_sigterm_during_training_then_resume_gives_the_uninterrupted_weights(tmp_path, small_run):
    """A training job that hits its time limit (SIGTERM), requeued with --resume."""
    from cfsx.config import TrainingConfig
    from cfsx.learning.training import train

    data = tmp_path / "d.h5"
    simulate(small_run(2, 200), data, workers=1)
    args = ["train", str(data), "-o", str(tmp_path / "m.keras"), "--config", "train-demo", "--epochs", "40"]
    run = cfsx_process(*args, cwd=tmp_path)
    wait_for(lambda: (tmp_path / "m.keras.parts" / "state.npz").exists(), timeout=120)
    run.send_signal(signal.SIGTERM)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == EXIT_RESUMABLE and "Traceback" not in out and "--resume" in out, out
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0 and "resumed after epoch" in resumed.output, resumed.output
    whole = train(data, tmp_path / "whole.keras", load_config("train-demo", ["fit.epochs=40"], root=TrainingConfig))
    resumed_weights = models.load_model(tmp_path / "m.keras")[0].get_weights()
    for mine, theirs in zip(resumed_weights, models.load_model(whole.model_path)[0].get_weights(), strict=True):
        assert np.array_equal(mine, theirs)


# 6, 12. Models that disagree with their metadata, and tampered models ----------------------------------


def _metadata(cfs: int = 2, image_size: int = 16) -> dict:
    from cfsx.physics.encoding import cfs_vectors, vector_labels

    vectors = cfs_vectors(cfs)
    config = load_config("demo", [f"encoding.cfs={cfs}", f"diffraction.image_size={image_size}"])
    return {"cfs": cfs, "vectors": vectors.tolist(), "labels": vector_labels(vectors), "image_size": image_size,
            "h_max": 1.0, "lot_size": 32, "simulation_config": config.to_yaml(), "split": {"test": []},
            "training": {"config": {}, "history": [], "data_fingerprint": "", "epochs_run": 0, "best_epoch": 0,
                         "seconds": 0.0},
            "metrics": {"test": {"samples": 0, "r2": 0.0, "mse": 0.0, "mae": 0.0, "mean_residual": 0.0,
                                 "per_component": {}}}}  # fmt: skip


def _model(path: Path, outputs: int, image_size: int = 16) -> Path:
    return models.write_model_file(models.build_model("small", image_size, outputs), _metadata(2, image_size), path)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "image.npy"
    np.save(path, np.random.default_rng(0).uniform(0.5, 1.5, (16, 16)))
    return path


def test_a_model_whose_outputs_disagree_with_its_encoding_is_refused_when_loaded(tmp_path, image_file, shards):
    model = _model(tmp_path / "five.keras", outputs=5)
    with pytest.raises(DataError, match=r"\(5,\) outputs, its metadata says CFS2 \(3 components\)"):
        models.load_model(model)
    interpreted = runner.invoke(app, ["interpret", "--model", str(model), str(image_file), "-o", str(tmp_path / "out")])
    one_line_error(interpreted, EXIT_BAD_INPUT, "five.keras", "5,")
    evaluated = runner.invoke(app, ["evaluate", str(model), str(shards / "s0.h5"), "-o", str(tmp_path / "rep")])
    one_line_error(evaluated, EXIT_BAD_INPUT, "five.keras", "5,")


@pytest.mark.parametrize(
    "hostile",
    [
        {"module": "os", "class_name": "system", "config": {"command": "touch {marker}"}},
        {"module": "subprocess", "class_name": "Popen", "config": {"args": ["touch", "{marker}"]}},
    ],
)
def test_a_tampered_model_is_refused_in_one_line_without_running_code(tmp_path, image_file, hostile):
    honest = _model(tmp_path / "honest.keras", outputs=3)
    marker = tmp_path / "ran"
    with zipfile.ZipFile(honest) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    layer = config["config"]["layers"][1]
    layer.update(json.loads(json.dumps(hostile).replace("{marker}", str(marker))))
    entries["config.json"] = json.dumps(config).encode()
    tampered = tmp_path / "tampered.keras"
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    result = runner.invoke(app, ["interpret", "--model", str(tampered), str(image_file), "-o", str(tmp_path / "out")])
    one_line_error(result, EXIT_BAD_INPUT, "cannot load the model")
    assert not marker.exists() and not (tmp_path / "out").exists()


# 7. Memory ------------------------------------------------------------------------------------------


def test_a_run_that_cannot_fit_in_memory_is_refused_before_it_starts(tmp_path):
    output = tmp_path / "huge.h5"
    result = runner.invoke(app, ["simulate", "demo", "-o", str(output), "--set", "diffraction.image_size=2048",
                                 "--set", "run.batch_size=4096", "--set", "run.samples=8192"])  # fmt: skip
    one_line_error(result, EXIT_BAD_INPUT, "GiB of memory", "lower run.batch_size")
    assert not output.exists() and not (tmp_path / "huge.h5.parts").exists()


def test_the_memory_estimate_grows_with_batches_images_and_workers(monkeypatch):
    base = load_config("demo", ["run.batch_size=16"])
    bigger_batches = load_config("demo", ["run.batch_size=64"])
    bigger_images = load_config("demo", ["run.batch_size=16", "diffraction.image_size=128"])
    assert memory_estimate(bigger_batches, 2) > 3 * memory_estimate(base, 2) * 0.9
    assert memory_estimate(bigger_images, 2) > 3 * memory_estimate(base, 2)
    assert memory_estimate(base, 8) > memory_estimate(base, 2)
    monkeypatch.setattr("cfsx.simulation.workers.available_memory", lambda: memory_estimate(base, 2) - 1)
    with pytest.raises(Exception, match=r"lower run.batch_size \(to 15 or less\)"):
        check_memory(base, 2)
    check_memory(load_config("demo", ["run.batch_size=8"]), 2)  # half the batch fits


# 10, 11, 15. Clear lines for directories, YAML mistakes and inconsistent files ----------------------------


@pytest.mark.parametrize(
    "command",
    [["info", "{dir}"], ["merge", "{dir}", "-o", "{tmp}/m.h5"], ["train", "{dir}", "-o", "{tmp}/m.keras"],
     ["evaluate", "{model}", "{dir}", "-o", "{tmp}/report"]],
)  # fmt: skip
def test_a_directory_where_a_file_is_expected_is_named_as_such(tmp_path, command):
    folder = tmp_path / "adir"
    folder.mkdir()
    model = _model(tmp_path / "m0.keras", outputs=3)
    args = [a.format(dir=folder, tmp=tmp_path, model=model) for a in command]
    one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, f"{folder} is a directory")


def test_yaml_mistakes_are_reported_with_line_and_column(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("lattice:\n  size: 16\n concentration: 0.5\n")
    result = runner.invoke(app, ["simulate", str(config), "-o", str(tmp_path / "x.h5")])
    one_line_error(result, EXIT_BAD_INPUT, "bad.yaml", "line 3, column 2")
    override = runner.invoke(app, ["simulate", "demo", "-o", str(tmp_path / "x.h5"), "--set", "lattice.size=[1"])
    one_line_error(override, EXIT_BAD_INPUT, "line 1, column")


def test_info_names_what_is_wrong_in_an_inconsistent_file(shards, tmp_path):
    broken = tmp_path / "broken.h5"
    shutil.copy(shards / "s0.h5", broken)
    with h5py.File(broken, "a") as file:
        del file["encodings/achieved"]
        file["encodings/achieved"] = np.zeros((8, 3), np.float32)  # 4 images, 8 labels
    for command in (["info", str(broken)], ["train", str(broken), "-o", str(tmp_path / "m.keras")]):
        one_line_error(runner.invoke(app, command), EXIT_BAD_INPUT, "4 images but 8 entries in /encodings/achieved")


# The exit-code table: a bug is one line and exit 1 -----------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_exit_1(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr("cfsx.io.dataset_info.DatasetInfo.summary", broken)
    result = runner.invoke(app, ["info", str(Path(__file__).parent / "missing.h5")])
    one_line_error(result, EXIT_BAD_INPUT, "no such file")  # before the broken call
    good = tmp_path / "g.h5"
    simulate(load_config("demo", TINY[1::2] + ["run.samples=2"]), good, workers=1)
    one_line_error(runner.invoke(app, ["info", str(good)]), EXIT_INTERNAL, "internal error", "RuntimeError")


# Found by make fuzz (benchmarks/fuzz.py), kept fixed -------------------------------------------------------------


def _edited_copy(source: Path, target: Path, edit) -> Path:
    shutil.copy(source, target)
    with h5py.File(target, "a") as file:
        edit(file)
    return target


def _replace(name: str, values):
    def edit(file):
        del file[name]
        file[name] = values

    return edit


def _soft_loop(file):
    del file["seeds"]
    file["seeds"] = h5py.SoftLink("/seeds")


def test_fuzz_findings_in_datasets_are_one_line(shards, tmp_path):
    shard = shards / "s0.h5"
    damaged = {
        "complex": (_replace("encodings/target", np.zeros((4, 3), np.complex64)), "complex64 values, not real"),
        "link loop": (_soft_loop, "is damaged"),
        "attribute": (lambda file: file.attrs.__setitem__("cfs", 1), "is not a CFS size"),
        "shard attribute": (lambda file: file.attrs.__setitem__("shard_index", "x"), "shard_index = 'x' is not an"),
    }
    for name, (edit, message) in damaged.items():
        path = _edited_copy(shard, tmp_path / f"{name.replace(' ', '-')}.h5", edit)
        one_line_error(runner.invoke(app, ["info", str(path)]), EXIT_BAD_INPUT, message)
    flipped = tmp_path / "flipped.h5"
    content = bytearray(shard.read_bytes())
    with h5py.File(shard) as file:
        chunk = file["encodings/achieved"].id.get_chunk_info(1)  # compressed labels: corrupt data, not a missing file
    content[chunk.byte_offset : chunk.byte_offset + chunk.size] = bytes(chunk.size)
    flipped.write_bytes(bytes(content))
    one_line_error(runner.invoke(app, ["info", str(flipped)]), EXIT_BAD_INPUT, "is damaged")


def test_fuzz_findings_in_configs_outputs_and_stores_are_one_line(shards, tmp_path, image_file):
    deep = tmp_path / "deep.yaml"
    deep.write_text("lattice:\n  size: " + "[" * 20000 + "]" * 20000 + "\n")
    one_line_error(runner.invoke(app, ["simulate", str(deep), "-o", str(tmp_path / "x.h5")]), EXIT_BAD_INPUT, "deep")
    nameless = runner.invoke(
        app, ["interpret", "--model", str(_model(tmp_path / "m.keras", 3)), str(image_file), "-o", ""]
    )
    one_line_error(nameless, EXIT_OUTPUT, "no name of its own")
    store = _edited_copy(shards / "s0.h5", tmp_path / "store.h5", lambda file: None)
    with h5py.File(store, "a") as file:
        file.attrs["kind"] = "store"
    model = tmp_path / "m.keras"
    result = runner.invoke(app, ["interpret", "--model", str(model), str(image_file), "-o", str(tmp_path / "out"),
                                 "--record", str(store), "--replicates", "1", "--no-figures"])  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_reader_library_s_own_log_lines_stay_off_the_terminal(tmp_path):
    import tifffile

    fake_png = tmp_path / "w0.png"
    tifffile.imwrite(fake_png, np.zeros((3, 128), np.longdouble))
    result = runner.invoke(app, ["correct", str(fake_png), "-o", str(tmp_path / "c.h5")])
    one_line_error(result, EXIT_BAD_INPUT, "w0.png")


def test_a_file_declaring_samples_it_never_wrote_is_refused_without_reading_them(shards, tmp_path):
    hollow = tmp_path / "hollow.h5"
    shutil.copy(shards / "s0.h5", hollow)
    with h5py.File(hollow, "a") as file:
        for name in [name for name in dataset.PATH_DTYPES if name in file]:
            shape, dtype = file[name].shape, file[name].dtype
            del file[name]
            file.create_dataset(
                name, shape=(10**8, *shape[1:]), dtype=dtype, chunks=(1, *shape[1:]), compression="gzip"
            )
    one_line_error(runner.invoke(app, ["info", str(hollow)]), EXIT_BAD_INPUT, "0 of its 100000000 images")


def test_info_describes_a_file_without_labels_and_models_need_numeric_grids(shards, tmp_path, image_file):
    unlabelled = _edited_copy(shards / "s0.h5", tmp_path / "u.h5", lambda file: file.__delitem__("encodings/achieved"))
    result = runner.invoke(app, ["info", str(unlabelled)])
    assert result.exit_code == 0 and "no labels" in result.output, result.output
    metadata = {**_metadata(), "h_max": ""}
    model = models.write_model_file(models.build_model("small", 16, 3), metadata, tmp_path / "h.keras")
    interpreted = runner.invoke(app, ["interpret", "--model", str(model), str(image_file), "-o", str(tmp_path / "out")])
    one_line_error(interpreted, EXIT_BAD_INPUT, "h_max = ''")


def test_a_huge_number_of_decodes_is_refused_at_once():
    """make fuzz found interpret --replicates 2**63 hanging while it listed the seeds: refused when read."""
    for override in ("decode.replicates=9223372036854775808", "refine.seeds=100000"):
        with pytest.raises(ConfigError, match="must be an integer in"):
            load_config("interpret", [override], root=InterpretationConfig)


@pytest.mark.parametrize("command", ["simulate", "train"])
def test_a_new_run_removes_only_checkpoints_cfsx_wrote(tmp_path, command):
    """Issue 30, item 4: a run without --resume deleted OUTPUT.parts/ whole, a user's file in it included, and
    failed with a traceback when it was a symbolic link. It clears cfsx's own checkpoint files and refuses the rest."""
    runner = CliRunner()
    data = tmp_path / "data.h5"
    assert runner.invoke(app, ["simulate", "demo", "-o", str(data), "--samples", "8", "--workers", "1", *TINY]
                         ).exit_code == 0  # fmt: skip
    output = tmp_path / ("out.h5" if command == "simulate" else "m.keras")
    args = (["simulate", "demo", "-o", str(output), "--samples", "4", "--workers", "1", *TINY] if command == "simulate"
            else ["train", str(data), "-o", str(output), "--config", "train-demo", "--epochs", "1"])  # fmt: skip
    parts = output.with_name(output.name + ".parts")
    parts.mkdir()
    (parts / "manifest.json").write_text("{}")  # an earlier run's: cleared
    (parts / "notes.txt").write_text("mine\n")  # the user's: refused, kept
    one_line_error(runner.invoke(app, args), EXIT_OUTPUT, "notes.txt", "did not write")
    assert (parts / "notes.txt").read_text() == "mine\n" and (parts / "manifest.json").exists()
    (parts / "notes.txt").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep\n")
    shutil.rmtree(parts)
    parts.symlink_to(elsewhere)
    one_line_error(runner.invoke(app, args), EXIT_OUTPUT, "symbolic link")
    assert (elsewhere / "keep.txt").read_text() == "keep\n"
    parts.unlink()
    parts.mkdir()
    (parts / "manifest.json").write_text("{}")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert output.exists() and not parts.exists()


def test_a_damaged_training_checkpoint_is_refused_in_one_line_naming_it(tmp_path, small_run):
    """Issue 30, item 12: a truncated, empty or shape-mismatched state.npz, or one with a negative epoch, gave exit 1
    (BadZipFile) or "training failed: Graph execution error:"."""
    from cfsx.config import TrainingConfig
    from cfsx.learning.training import train

    data = tmp_path / "d.h5"
    simulate(small_run(2, 60), data, workers=1)
    config = load_config("train-demo", ["fit.epochs=3"], root=TrainingConfig)

    def stop_in_second(report):  # the first epoch's checkpoint is written, the second's is not
        if report.epoch == 2:
            raise KeyboardInterrupt

    train(data, tmp_path / "m.keras", config, on_epoch=stop_in_second)
    state = tmp_path / "m.keras.parts" / "state.npz"
    good = state.read_bytes()
    with np.load(state) as saved:
        arrays = {name: saved[name] for name in saved.files}
    scalars = json.loads(str(arrays["state_json"]))

    def rewritten(**changes):
        np.savez(state, **{**arrays, **changes})

    damages = {
        "truncated": lambda: state.write_bytes(good[: len(good) // 2]),
        "empty": lambda: state.write_bytes(b""),
        "not a zip": lambda: state.write_bytes(b"garbage" * 100),
        "a weight of another shape": lambda: rewritten(weights_0=np.zeros((1, 2, 3), np.float32)),
        "a negative epoch": lambda: rewritten(state_json=np.array(json.dumps({**scalars, "epoch": -1}))),
        "an epoch beyond its history": lambda: rewritten(state_json=np.array(json.dumps({**scalars, "epoch": 5}))),
        "NaN weights": lambda: rewritten(weights_0=np.full_like(arrays["weights_0"], np.nan)),
        "a missing array": lambda: np.savez(state, **{k: v for k, v in arrays.items() if k != "optimizer_0"}),
    }
    args = ["train", str(data), "-o", str(tmp_path / "m.keras"), "--config", "train-demo", "--epochs", "3", "--resume"]
    before = digest(tmp_path / "m.keras")  # the interrupted run's model: a refused resume leaves it alone
    for name, damage in damages.items():
        damage()
        result = runner.invoke(app, args)
        one_line_error(result, EXIT_BAD_INPUT, "cannot resume")
        assert "state.npz" in result.output or "checkpoint" in result.output, (name, result.output)
        assert digest(tmp_path / "m.keras") == before, name
    state.write_bytes(good)
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0 and "resumed after epoch 1" in resumed.output, resumed.output


def test_library_calls_and_set_values_out_of_range_are_refused_in_words(tmp_path, small_run):
    """Issue 30, item 18: f2py's, NumPy's and h5py's own messages reached the user; 1e308 was read as text."""
    from cfsx.errors import EngineError
    from cfsx.interpretation import interpret_images
    from cfsx.learning.corruption import corrupted_copy
    from cfsx.learning.training_records import TrainingArrays
    from cfsx.physics import engine
    from cfsx.physics.encoding import cfs_vectors

    state = engine.seed_state(1)
    for call, words in [
        (lambda: engine.random_uint32(-1, state), "count must be an integer in 0.."),
        (lambda: engine.random_uniform(2**40, state), "count must be an integer in 0.."),
        (lambda: engine.random_lattice(2**20, 0.5, state), "lattice size must be an integer in 1..16384"),
        (lambda: engine.fejer_window(0), "lot size must be an integer in 1.."),
    ]:
        with pytest.raises(EngineError, match=words):
            call()
    assert len(engine.random_uint32(0, state)[0]) == 0  # drawing nothing is fine
    with pytest.raises(ConfigError, match="section.key"):
        load_config(None, nope=1)
    assert load_config("demo", ["diffraction.h_max=1e1"]).diffraction.h_max == 10.0  # a number, not the text "1e1"
    with pytest.raises(ConfigError, match="h_max"):
        load_config("demo", ["diffraction.h_max=1e308"])  # refused for its value, as a number
    with pytest.raises(DataError, match="no images to interpret"):
        interpret_images("general-cfs2", np.zeros((0, 64, 64)))
    with pytest.raises(DataError, match="complex"):
        interpret_images("general-cfs2", np.ones((64, 64), dtype=complex))
    empty = TrainingArrays(np.zeros((0, 16, 16)), np.zeros((0, 3)), cfs_vectors(2), 1.0, 8)
    with pytest.raises(DataError, match="at least one sample"):
        empty.write(tmp_path / "empty.h5")
    nan = TrainingArrays(np.full((4, 16, 16), np.nan), np.zeros((4, 3)), cfs_vectors(2), 1.0, 8)
    with pytest.raises(DataError, match="NaN"):
        nan.write(tmp_path / "nan.h5")
    simulate(small_run(2, 2), tmp_path / "d.h5", workers=1)
    with pytest.raises(ConfigError, match="--seed"):
        corrupted_copy(tmp_path / "d.h5", tmp_path / "c.h5", seed=-1)
    one_line_error(runner.invoke(app, ["corrupt", str(tmp_path / "d.h5"), "-o", str(tmp_path / "c.h5"), "--seed",
                                       "-1"]), EXIT_BAD_INPUT, "--seed")  # fmt: skip
