"""Simulation on a Dask cluster and training under a tf.distribute strategy."""

import json
import os
import signal
import subprocess
import sys

import pytest
from test_simulation import assert_same_data
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.config import TrainingConfig, load_config
from cfsx.errors import ClusterError, ConfigError
from cfsx.simulation import simulate
from cfsx.simulation.cluster import Scheduler

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as local:
        yield local


def test_dask_cluster_gives_the_same_data_as_the_process_pool(tiny_config, tmp_path, cluster):
    simulate(tiny_config, tmp_path / "pool.h5", workers=2)
    simulate(tiny_config, tmp_path / "dask.h5", scheduler=Scheduler(address=cluster.scheduler_address))
    assert_same_data(tmp_path / "pool.h5", tmp_path / "dask.h5")


def test_a_killed_worker_loses_no_samples(tiny_config, tmp_path, cluster):
    with distributed.Client(cluster.scheduler_address) as client:
        worker_pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one_worker_after_first_batch(done, total):
        if done > 0 and not killed:
            os.kill(worker_pids[0], signal.SIGKILL)  # its tasks in flight must be re-run elsewhere
            killed.append(done)

    simulate(tiny_config, tmp_path / "local.h5", workers=1)
    simulate(
        tiny_config,
        tmp_path / "dask.h5",
        scheduler=Scheduler(address=cluster.scheduler_address),
        progress=kill_one_worker_after_first_batch,
    )
    assert killed and killed[0] < tiny_config.run.samples
    assert_same_data(tmp_path / "local.h5", tmp_path / "dask.h5")


def test_cli_runs_on_a_scheduler_file(tiny_config, tmp_path, cluster):
    scheduler_file = tmp_path / "scheduler.json"  # what dask-scheduler --scheduler-file writes; address is all we read
    scheduler_file.write_text(json.dumps({"type": "Scheduler", "address": cluster.scheduler_address}))
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "demo",
            "-o",
            str(tmp_path / "cli.h5"),
            "--samples",
            "8",
            "--scheduler-file",
            str(scheduler_file),
            "--set",
            "lattice.size=16",
            "--set",
            "diffraction.lot_size=8",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli.h5").exists()


def test_unreachable_scheduler_gives_one_clear_line(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "demo",
            "-o",
            str(tmp_path / "x.h5"),
            "--samples",
            "4",
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--scheduler-timeout",
            "2",
        ],  # fmt: skip
    )
    assert result.exit_code == ClusterError.exit_code
    assert "cannot connect to the Dask scheduler" in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_scheduler_options_are_checked(tmp_path):
    with pytest.raises(ConfigError):
        Scheduler()
    with pytest.raises(ConfigError, match="not found"):
        Scheduler(scheduler_file=tmp_path / "missing.json")
    result = CliRunner().invoke(
        app, ["simulate", "demo", "-o", str(tmp_path / "x.h5"), "--workers", "2", "--scheduler", "tcp://a:1"]
    )
    assert result.exit_code == ConfigError.exit_code and "--workers" in result.output


@pytest.mark.parametrize("strategy", ["mirrored", "multiworker"])
def test_training_under_a_distribution_strategy_gives_a_model_evaluate_reads(strategy, tmp_path):
    from cfsx.learning.evaluation import evaluate
    from cfsx.learning.training import train

    data = tmp_path / "data.h5"
    simulate(load_config("demo", ["run.samples=40", "lattice.size=16", "diffraction.lot_size=8",
                                  "diffraction.image_size=32"]), data, workers=1)  # fmt: skip
    config = load_config(
        "train-demo", ["evaluation.resimulated=2"], root=TrainingConfig, **{"fit.strategy": strategy, "fit.epochs": 1}
    )
    result = train(data, tmp_path / "model.keras", config)
    assert result.card.training.strategy == strategy
    assert result.card.training.replicas >= 1
    report = evaluate(result.model_path, data, tmp_path / "report", config)
    assert report.cnn.samples == len(result.card.hold_out_indices)


def test_several_workers_are_refused_with_one_clear_line(tmp_path):
    # Keras 3 cannot fit() under MultiWorkerMirroredStrategy with more than one worker; cfsx says so
    # at once instead of waiting for the other workers and failing inside Keras.
    data = tmp_path / "data.h5"
    simulate(load_config("demo", ["run.samples=20", "lattice.size=16", "diffraction.lot_size=8"]), data, workers=1)
    tf_config = {"cluster": {"worker": ["localhost:23466", "localhost:23467"]}, "task": {"type": "worker", "index": 0}}
    command = [sys.executable, "-m", "cfsx", "train", str(data), "-o", str(tmp_path / "m.keras")]
    environment = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
    result = subprocess.run(
        [*command, "--strategy", "multiworker"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=environment,
    )
    assert result.returncode == ClusterError.exit_code
    assert "keras-team/keras#20585" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.keras").exists()
