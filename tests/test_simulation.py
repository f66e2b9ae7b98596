"""simulate, merge, info: the dataset format, determinism, resume, shards and bad input."""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.config import BUILTIN_CONFIGS, load_config
from cfsx.errors import ConfigError
from cfsx.io import dataset
from cfsx.io.cpus import worker_count
from cfsx.physics import engine
from cfsx.physics.encoding import cfs_vectors
from cfsx.simulation import Shard, sample_seed, simulate, simulate_sample

runner = CliRunner()

DATASETS = list(dataset.PATH_DTYPES)


def read_all(path):
    with h5py.File(path, "r") as file:
        return {name: file[name][()] for name in DATASETS}, dict(file.attrs)


def assert_same_data(a, b):
    data_a, _ = read_all(a)
    data_b, _ = read_all(b)
    for name in DATASETS:
        assert np.array_equal(data_a[name], data_b[name]), name


def test_dataset_follows_format_2(tiny_config, tmp_path):
    """Format 2 is format 1's paths (which format-1 readers use) plus the NeXus entry (tests/test_nexus.py)."""
    out = tmp_path / "data.h5"
    report = simulate(tiny_config, out, workers=1)
    data, attrs = read_all(out)
    assert attrs["format"] == "cfsx-dataset" and attrs["format_version"] == 2
    assert attrs["cfs"] == 2 and np.array_equal(attrs["vectors"], cfs_vectors(2))
    assert "lattice:" in attrs["config"] and attrs["created"] and attrs["cfsx_version"]
    assert data["images"].shape == (24, 16, 16) and data["images"].dtype == np.float32
    assert data["encodings/achieved"].shape == (24, 3) and data["lattices"].shape == (24, 16, 16)
    assert data["seeds"].dtype == np.uint64 and len(set(data["seeds"].tolist())) == 24
    with h5py.File(out) as file:
        assert file["images"].chunks == (1, 16, 16) and file["images"].compression == "gzip"
    # the labels are the measured alpha of the stored lattices
    for lattice, achieved in zip(data["lattices"], data["encodings/achieved"], strict=True):
        np.testing.assert_allclose(engine.measure_alpha(lattice, cfs_vectors(2)), achieved, atol=1e-6)
    assert report.samples == 24 and 0 <= report.reach.reached_fraction <= 1
    assert not (tmp_path / "data.h5.parts").exists()


def test_realisable_targets_are_the_alpha_of_the_stored_lattices(tiny_config, tmp_path):
    """targets.distribution couplings: each sample's target and label are the measured alpha of its lattice,
    made at the stored couplings (strength within coupling_range), with no feedback; workers do not matter."""
    config = dataclasses.replace(tiny_config, targets=dataclasses.replace(
        tiny_config.targets, distribution="couplings", coupling_range=[0.05, 0.8], sweeps=5))  # fmt: skip
    report = simulate(config, tmp_path / "one.h5", workers=1)
    simulate(config, tmp_path / "two.h5", workers=2)
    assert_same_data(tmp_path / "one.h5", tmp_path / "two.h5")
    data, _ = read_all(tmp_path / "one.h5")
    for lattice, achieved in zip(data["lattices"], data["encodings/achieved"], strict=True):
        np.testing.assert_allclose(engine.measure_alpha(lattice, cfs_vectors(2)), achieved, atol=1e-6)
    assert np.array_equal(data["encodings/target"], data["encodings/achieved"])
    assert (data["cycles"] == 0).all() and (data["stop_reasons"] == engine.STOP_REASONS.index("reached")).all()
    strength = np.abs(data["interactions"]).max(axis=1)
    assert (strength <= 0.8 + 1e-6).all() and strength.min() < 0.2 < strength.max()
    assert report.reach.stops == {"reached": 24, "stalled": 0, "max_cycles": 0}


def test_a_config_without_the_new_keys_runs_the_seed_studys_loop(tiny_config):
    """A config without the issue-13 keys gives exactly the sample of Welberry's loop, rebuilt here from the
    engine's pieces in the order the seed study's simulate ran them."""
    seed = sample_seed(tiny_config.run.seed, 3)
    sample = simulate_sample(tiny_config, seed)
    vectors, fb, lattice_size = cfs_vectors(2), tiny_config.feedback, tiny_config.lattice.size
    state = engine.seed_state(seed)
    uniform, state = engine.random_uniform(3, state)
    target = -0.5 + uniform  # demo: uniform in [-0.5, 0.5]
    lattice, state = engine.random_lattice(lattice_size, tiny_config.lattice.concentration, state)
    result = engine.feedback(
        lattice,
        vectors,
        target,
        state,
        engine.FeedbackSettings(fb.gain, fb.sweeps_per_cycle, fb.tolerance, fb.max_cycles, fb.coupling_bound),
    )
    diffraction = tiny_config.diffraction
    origins, _ = engine.random_origins(lattice_size, diffraction.n_lots, result.state)
    image = engine.lot_intensity(result.lattice, diffraction.lot_size, origins, diffraction.image_size,
                                 diffraction.h_max)  # fmt: skip
    assert np.array_equal(sample["lattices"], result.lattice) and sample["cycles"] == result.cycles
    assert np.array_equal(sample["images"], image.astype(np.float32))
    assert np.array_equal(sample["target"], target.astype(np.float32))
    assert sample["stop_reasons"] in (engine.STOP_REASONS.index("reached"), engine.STOP_REASONS.index("max_cycles"))


def test_a_sample_is_reproduced_from_its_seed(tiny_config, tmp_path):
    out = tmp_path / "data.h5"
    simulate(tiny_config, out, workers=1)
    data, _ = read_all(out)
    again = simulate_sample(tiny_config, int(data["seeds"][5]))
    assert int(data["seeds"][5]) == sample_seed(tiny_config.run.seed, 5)
    assert np.array_equal(again["images"], data["images"][5])
    assert np.array_equal(again["lattices"], data["lattices"][5])


def test_same_data_for_any_number_of_workers(tiny_config, tmp_path):
    simulate(tiny_config, tmp_path / "one.h5", workers=1)
    simulate(tiny_config, tmp_path / "two.h5", workers=2)
    assert_same_data(tmp_path / "one.h5", tmp_path / "two.h5")


def test_merged_shards_equal_a_single_run(tiny_config, tmp_path):
    simulate(tiny_config, tmp_path / "single.h5", workers=1)
    shards = [tmp_path / f"shard{i}.h5" for i in range(3)]
    for i, path in enumerate(shards):
        simulate(tiny_config, path, workers=1, shard=Shard(i, 3))
    result = CliRunner().invoke(app, ["merge", *map(str, reversed(shards)), "-o", str(tmp_path / "merged.h5")])
    assert result.exit_code == 0, result.output
    assert_same_data(tmp_path / "single.h5", tmp_path / "merged.h5")
    result = CliRunner().invoke(app, ["merge", str(shards[0]), str(shards[2]), "-o", str(tmp_path / "bad.h5")])
    assert result.exit_code != 0 and "missing shards [1]" in result.output
    assert not (tmp_path / "bad.h5").exists()


def test_resume_after_kill_gives_the_uninterrupted_data(tmp_path):
    args = ["demo", "--set", "run.samples=120", "--set", "run.batch_size=4", "--set", "lattice.size=24",
            "--set", "diffraction.lot_size=12", "--workers", "1"]  # fmt: skip
    out = tmp_path / "data.h5"
    command = [sys.executable, "-m", "cfsx", "simulate", *args, "-o", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    parts = tmp_path / "data.h5.parts"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(parts.glob("batch-*.npz"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    kept = len(list(parts.glob("batch-*.npz")))
    assert 3 <= kept < 30
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "from checkpoints" in resumed.stderr
    subprocess.run(command[:-2] + ["-o", str(tmp_path / "clean.h5")], check=True, capture_output=True, cwd=tmp_path)
    assert_same_data(out, tmp_path / "clean.h5")


def test_info_describes_a_dataset(tiny_config, tmp_path):
    simulate(tiny_config, tmp_path / "data.h5", workers=1)
    result = CliRunner().invoke(app, ["info", str(tmp_path / "data.h5")])
    assert result.exit_code == 0
    assert "24 samples" in result.output and "CFS2" in result.output and "alpha(1,1)" in result.output
    assert "targets reached within 0.02" in result.output


def _write_garbage(path):
    path.write_bytes(os.urandom(2048))
    return path


def _write_foreign_h5(path):
    with h5py.File(path, "w") as file:
        file["x"] = np.zeros(3)
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["simulate", "no-such-config.yaml"], "config not found"),
        (["simulate", "demo", "--set", "feedback.gain=-1"], "feedback.gain"),
        (["simulate", "demo", "--set", "feedback.speed=3"], "unknown key feedback.speed"),
        (["simulate", "demo", "--set", "diffraction.lot_size=99"], "larger than the lattice"),
        (["simulate", "demo", "--set", "targets.low=[0.1, 0.2]"], "components"),
        (["simulate", "demo", "--set", "lattice.concentration=nan"], "lattice.concentration"),
        (["simulate", "demo", "--samples", "0"], "run.samples"),
        (["simulate", "demo", "--shard", "3/3"], "--shard"),
        (["simulate", "demo", "--workers", "0"], "--workers"),
        (["info", "{tmp}/missing.h5"], "no such file"),
        (["info", "GARBAGE"], "not a readable HDF5"),
        (["info", "FOREIGN"], "not a cfsx dataset"),
        (["merge", "FOREIGN", "-o", "{tmp}/merged.h5"], "not a cfsx dataset"),
    ],
)
def test_bad_input_gives_one_clear_line(args, message, tmp_path):
    replacements = {"GARBAGE": str(_write_garbage(tmp_path / "garbage.h5")),
                    "FOREIGN": str(_write_foreign_h5(tmp_path / "foreign.h5"))}  # fmt: skip
    args = [replacements.get(a, a.format(tmp=tmp_path)) for a in args]
    if args[0] == "simulate":
        args += ["-o", str(tmp_path / "out.h5")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code not in (0, None)
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "merged.h5").exists()


def test_missing_output_directory_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "demo", "-o", str(tmp_path / "nowhere" / "x.h5")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_every_module_is_installed():
    """meson.build lists the package's Python files one by one; a forgotten one would be missing after install."""
    root = Path(__file__).resolve().parents[1]
    listed = set(re.findall(r"'(cfsx/[\w/]+\.py)'", (root / "meson.build").read_text()))
    present = {str(path.relative_to(root)) for path in (root / "cfsx").glob("*.py")}
    assert present == listed


def test_workers_follow_the_cpu_affinity_and_slurm(monkeypatch):
    """Default workers (and TensorFlow threads): the CPUs this process may use, capped by SLURM_CPUS_PER_TASK."""
    from cfsx.io.cpus import available_cpus

    allowed = os.sched_getaffinity(0)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert available_cpus() == 1 and worker_count(None) == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert available_cpus() == len(allowed)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert worker_count(None) == 1 and worker_count(3) == 3  # an explicit --workers wins
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "lots")
    assert available_cpus() == len(allowed)


def test_version_option():
    from cfsx import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"cfsx {__version__}"


@pytest.mark.parametrize(
    "command",
    ["simulate", "corrupt", "merge", "info", "models", "train", "evaluate", "correct", "interpret", "config show"],
)
def test_every_command_has_examples_in_its_help(command):
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "Examples:" in result.output and f"$ cfsx {command} " in result.output
    eaten = re.findall(r"\w+ \.(?= |$)", result.output, flags=re.M)  # "[default: ...]" taken for rich markup
    assert not eaten, eaten


@pytest.mark.parametrize("name", sorted(path.stem for path in BUILTIN_CONFIGS.glob("*.yaml")))
def test_config_show_prints_the_resolved_config_with_its_comments(name, tmp_path):
    """What config show prints reads back as the same config; the file's comments are kept."""
    from cfsx.app.cli.describe import CONFIG_KINDS, _config_root

    result = runner.invoke(app, ["config", "show", name])
    assert result.exit_code == 0, result.output
    shown = tmp_path / "shown.yaml"
    shown.write_text(result.stdout)
    kind = re.search(r"\((\w+) config\)", result.stdout.splitlines()[0]).group(1)
    assert kind in CONFIG_KINDS
    assert load_config(shown, root=_config_root(kind)) == load_config(name, root=_config_root(kind))
    source_comments = [line.strip() for line in (BUILTIN_CONFIGS / f"{name}.yaml").read_text().splitlines()
                       if line.strip().startswith("#")]  # fmt: skip
    assert all(comment in result.stdout for comment in source_comments)


def test_config_show_applies_and_marks_overrides(tmp_path):
    result = runner.invoke(app, ["config", "show", "cfs4", "--set", "lattice.size=64"])
    assert result.exit_code == 0 and "  size: 64  # set on the command line" in result.stdout
    assert "  n_lots: 8" in result.stdout and "  store_lattices: true" in result.stdout
    bad = runner.invoke(app, ["config", "show", "cfs4", "--set", "lattice.size=-3"])
    assert bad.exit_code == 3 and "lattice.size" in bad.output
    assert runner.invoke(app, ["config", "show", "cfs4", "--kind", "nonsense"]).exit_code == 3


def test_verbose_logs_the_steps_and_quiet_prints_nothing_but_errors(tmp_path):
    command = [sys.executable, "-m", "cfsx"]
    args = ["simulate", "demo", "--samples", "4", "--workers", "1", "--set", "lattice.size=16",
            "--set", "diffraction.lot_size=8", "--set", "diffraction.image_size=16"]  # fmt: skip
    verbose = subprocess.run([*command, "-vv", *args, "-o", "v.h5"], capture_output=True, text=True, cwd=tmp_path)
    assert verbose.returncode == 0 and "cfsx.simulation.simulate: v.h5: samples 0-3" in verbose.stderr
    assert "samples 0-3 done" in verbose.stderr  # -vv: the details
    quiet = subprocess.run([*command, "-q", *args, "-o", "q.h5"], capture_output=True, text=True, cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == "" and (tmp_path / "q.h5").exists()
    failed = subprocess.run([*command, "-q", "info", "missing.h5"], capture_output=True, text=True, cwd=tmp_path)
    assert failed.returncode == 3 and failed.stderr.strip() == "error: no such file: missing.h5"
    assert runner.invoke(app, ["-v", "-q", "info", "x.h5"]).exit_code == 2


def test_blas_threads_follow_slurm_cpus_per_task(tmp_path):
    """Every command limits NumPy's BLAS to the CPUs the job may use (here SLURM_CPUS_PER_TASK=1)."""
    script = "\n".join([
        "import numpy",
        "from threadpoolctl import threadpool_info",
        "from typer.testing import CliRunner",
        "from cfsx.app.cli import app",
        "CliRunner().invoke(app, ['info', 'missing.h5'])",
        "print(sorted({pool['num_threads'] for pool in threadpool_info() if pool['user_api'] == 'blas'}))",
    ])  # fmt: skip
    environment = {**os.environ, "SLURM_CPUS_PER_TASK": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env=environment, check=True)  # fmt: skip
    assert result.stdout.strip() == "[1]"


def test_json_records_of_simulate_and_info(tmp_path):
    """--json: one JSON object on stdout (parsed here), the human summary elsewhere."""
    import json

    out = tmp_path / "j.h5"
    result = subprocess.run([sys.executable, "-m", "cfsx", "simulate", "demo", "-o", str(out), "--samples", "6",
                             "--workers", "1", "--json"], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["samples"] == 6 and sum(record["reach"]["stops"].values()) == 6
    assert "wrote 6 samples" in result.stderr
    described = subprocess.run([sys.executable, "-m", "cfsx", "info", str(out), "--json"], capture_output=True,
                               text=True, cwd=tmp_path)  # fmt: skip
    info = json.loads(described.stdout)
    assert info["samples"] == 6 and info["config"]["encoding"]["cfs"] == 2 and len(info["label_mean"]) == 3
    assert "labels (achieved alpha)" in described.stderr


def test_concentration_range_draws_each_samples_concentration_from_its_seed():
    """Every sample's lattice holds round(c N^2) ones for its own c in the range; decoding keeps the fixed c."""
    config = load_config("general-n32-l16-k8", ["lattice.size=20", "diffraction.lot_size=10"])
    samples = [simulate_sample(config, sample_seed(5, i)) for i in range(12)]
    fractions = np.array([sample["lattices"].mean() for sample in samples])
    assert np.all((fractions >= 0.2 - 1 / 400) & (fractions <= 0.8 + 1 / 400)) and fractions.std() > 0.05
    again = simulate_sample(config, sample_seed(5, 3))
    assert np.array_equal(again["lattices"], samples[3]["lattices"])
    decoded = simulate_sample(config, sample_seed(5, 3), target=np.zeros(15))
    assert decoded["lattices"].sum() == round(0.5 * 400)
    with pytest.raises(ConfigError, match="concentration_range"):
        load_config("general-n32-l16-k8", ["lattice.concentration_range=[0.9, 0.1]"])


@pytest.mark.parametrize(
    ("content", "kind", "message"),
    [
        ("lattice: [unclosed\n", None, "not valid YAML: line 2"),
        ("lattice: !!python/object/apply:os.system ['true']\n", None, "not valid YAML"),
        (b"lattice:\n  size: \xff\xfe\n", None, "not UTF-8"),
        ("- a list\n", None, "mapping of sections"),
        ("lattice: [unclosed\n", "simulate", "not valid YAML: line 2"),
        (None, None, "is a directory"),
    ],
)
def test_config_show_refuses_a_bad_file_in_one_line_with_or_without_its_kind(content, kind, message, tmp_path):
    """Issue 30, item 13: without --kind, a file YAML cannot parse was an internal error (ParserError, exit 1)."""
    path = tmp_path / "bad.yaml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = runner.invoke(app, ["config", "show", str(path), *(["--kind", kind] if kind else [])])
    assert result.exit_code == 3 and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output and "Traceback" not in result.output, result.output
