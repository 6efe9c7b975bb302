"""`seqrec train-simulator --num-workers N` on a real local Ray cluster, reached through `RAY_ADDRESS`.

One head node (`tests/ray_cluster.py`) serves every test here. One worker on the cluster must save the
single-process simulator's weights bit for bit; two workers must train and save a loadable simulator
whose workers ran on the cluster's node (the run records each worker's Ray node id and process id, and
the cluster's logs hold one worker log per `RayTrainWorker` actor). The last test stops the cluster and
checks that none of its processes is left.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.optional import import_extra  # noqa: E402
from tests.ray_cluster import (
    CLUSTER_MARKS,
    TRAIN_WORKER_ACTOR,
    actor_logs,
    assert_stops_cleanly,
    cluster_fixture,
    driver_logs,
    run_in_process,
    run_seqrec,
    summary,
)

import_extra("ray", extra="rllib")

pytestmark = CLUSTER_MARKS

cluster = cluster_fixture(num_cpus=3)  # two train workers and one CPU for Ray Data's reads

OPTIONS = [
    "--d-model", "16", "--history-len", "8", "--epochs", "2", "--batch-size", "128", "--seed", "0",
    "--ensemble-size", "2", "--world", "no", "--episodes", "64", "--threads", "1", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def logs_file(tmp_path_factory):
    from recsim_env.world.logging import log_world

    path = tmp_path_factory.mktemp("logs") / "world.parquet"
    log_world("uniform", steps=3000, seed=0, progress=False, num_envs=64).to_parquet(path)
    return path


def single_process(data: Path, out: Path) -> dict:
    """`seqrec train-simulator` in this process, without Ray."""
    from simulators.cli import train_simulator_command

    return run_in_process(
        "train-simulator", train_simulator_command, ["--data", str(data), "--out", str(out), *OPTIONS]
    )


@pytest.fixture(scope="module")
def single(logs_file, tmp_path_factory) -> tuple[dict, Path]:
    """The single-process run's summary and output directory."""
    out = tmp_path_factory.mktemp("single") / "sim"
    return single_process(logs_file, out), out


def test_one_worker_on_the_cluster_gives_the_single_process_simulator(cluster, logs_file, single, tmp_path):
    expected, single_out = single
    before = actor_logs(cluster, TRAIN_WORKER_ACTOR)
    done, pid = run_seqrec(
        cluster, "train-simulator", "--data", str(logs_file), "--out", str(tmp_path / "ray1"),
        "--num-workers", "1", *OPTIONS,
    )  # fmt: skip
    assert driver_logs(cluster, pid), f"the driver (pid {pid}) never joined the cluster at {cluster.address}"
    assert len(actor_logs(cluster, TRAIN_WORKER_ACTOR) - before) == 1
    got = summary(done.stdout)
    assert [w["rank"] for w in got["ray_train_workers"]] == [0]
    assert got["best_valid_loss"] == expected["best_valid_loss"]
    assert got["click_auc"] == expected["click_auc"]
    for name in ("weights.safetensors", "start_pool.safetensors", "config.json"):
        assert (tmp_path / "ray1" / name).read_bytes() == (single_out / name).read_bytes(), name


def test_two_workers_on_the_cluster_train_a_loadable_simulator(cluster, logs_file, single, tmp_path):
    import simulators

    out = tmp_path / "ray2"
    before = actor_logs(cluster, TRAIN_WORKER_ACTOR)
    done, pid = run_seqrec(
        cluster,
        "train-simulator",
        "--data",
        str(logs_file),
        "--out",
        str(out),
        "--num-workers",
        "2",
        *OPTIONS,
    )
    assert driver_logs(cluster, pid), f"the driver (pid {pid}) never joined the cluster at {cluster.address}"
    assert len(actor_logs(cluster, TRAIN_WORKER_ACTOR) - before) == 2  # one actor per worker
    got = summary(done.stdout)
    workers = got["ray_train_workers"]
    assert [w["rank"] for w in workers] == [0, 1] and len({w["pid"] for w in workers}) == 2
    node_ids = {w["node_id"] for w in workers}
    raylet = (cluster.logs / "raylet.out").read_text(errors="replace")
    assert len(node_ids) == 1 and node_ids.pop() in raylet  # the cluster's one node
    simulator = simulators.load(out)
    assert len(simulator.members) == 2
    temperatures = [float(t) for m in simulator.members for t in m.temperature]
    assert any(t != 1.0 for t in temperatures)  # calibrated on the gathered validation logits
    # the same protocol on the same exposures, other random streams: close to the single process
    expected, _ = single
    assert math.isfinite(got["best_valid_loss"])
    assert abs(got["best_valid_loss"] - expected["best_valid_loss"]) < 0.05 * expected["best_valid_loss"]
    assert abs(got["click_auc"] - expected["click_auc"]) < 0.05


def test_stopping_the_cluster_leaves_no_ray_process(cluster):
    """Runs last: the cluster had processes, and after the stop none of them (nor a new one) is left."""
    assert_stops_cleanly(cluster)
