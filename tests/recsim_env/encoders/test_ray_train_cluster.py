"""`seqrec train-encoder --num-workers N` on a real local Ray cluster, reached through `RAY_ADDRESS`.

One head node (`tests/ray_cluster.py`) serves every test here. One worker on the cluster must give the
single-process checkpoint bit for bit (from a Parquet log, streamed by `ray.data.read_parquet`); two
workers (from a CSV, handed over with `ray.data.from_pandas`) must train and save a loadable checkpoint
whose workers ran on the cluster's node: the run records each worker's Ray node id and process id, the
cluster's logs hold the driver's core-worker log and one worker log per `RayTrainWorker` actor. The
last test stops the cluster and checks that none of its processes is left.
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

COMMAND_TIMEOUT_S = 300
OPTIONS = [
    "--model", "sasrec", "--max-len", "8", "--d-model", "16", "--epochs", "4", "--lr", "0.005",
    "--batch-size", "32", "--device", "cpu", "--threads", "1", "--seed", "3", "--no-progress",
]  # fmt: skip


cluster = cluster_fixture(num_cpus=3)  # two train workers and one CPU for Ray Data's reads


@pytest.fixture(scope="module")
def logs_files(tmp_path_factory):
    from recsim_env.data import LoggedInteractions
    from tests.recsim_env.encoders.conftest import cyclic_frame

    folder = tmp_path_factory.mktemp("logs")
    frame = cyclic_frame()
    frame.to_csv(folder / "cyclic.csv", index=False)
    LoggedInteractions.from_frame(frame, feedback_cols=["rating"]).to_parquet(folder / "cyclic.parquet")
    return folder / "cyclic.csv", folder / "cyclic.parquet"


def single_process(data: Path, out: Path) -> dict:
    """`seqrec train-encoder` in this process, without Ray."""
    from recsim_env.encoders.cli import train_encoder_command

    return run_in_process(
        "train-encoder", train_encoder_command, ["--data", str(data), "--out", str(out), *OPTIONS]
    )


def test_one_worker_on_the_cluster_gives_the_single_process_checkpoint(cluster, logs_files, tmp_path):
    _, parquet = logs_files
    expected = single_process(parquet, tmp_path / "single")
    before = actor_logs(cluster, TRAIN_WORKER_ACTOR)
    done, pid = run_seqrec(
        cluster, "train-encoder", "--data", str(parquet), "--out", str(tmp_path / "ray1"),
        "--num-workers", "1", *OPTIONS, timeout_s=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    assert driver_logs(cluster, pid), f"the driver (pid {pid}) never joined the cluster at {cluster.address}"
    assert len(actor_logs(cluster, TRAIN_WORKER_ACTOR) - before) == 1
    got = summary(done.stdout)
    assert got["test"] == expected["test"] and got["best_epoch"] == expected["best_epoch"]
    weights = "weights.safetensors"
    assert (tmp_path / "ray1" / weights).read_bytes() == (tmp_path / "single" / weights).read_bytes()


def test_two_workers_on_the_cluster_train_a_loadable_encoder(cluster, logs_files, tmp_path):
    from recsim_env import data, encoders

    csv, _ = logs_files
    out = tmp_path / "ray2"
    before = actor_logs(cluster, TRAIN_WORKER_ACTOR)
    done, pid = run_seqrec(
        cluster, "train-encoder", "--data", str(csv), "--out", str(out), "--num-workers", "2", *OPTIONS,
        timeout_s=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    assert driver_logs(cluster, pid), f"the driver (pid {pid}) never joined the cluster at {cluster.address}"
    assert len(actor_logs(cluster, TRAIN_WORKER_ACTOR) - before) == 2  # one actor per worker
    checkpoint = encoders.load_checkpoint(out, item_ids=data.load(csv).item_ids)
    workers = checkpoint.metadata["ray_train_workers"]
    assert [w["rank"] for w in workers] == [0, 1] and len({w["pid"] for w in workers}) == 2
    node_ids = {w["node_id"] for w in workers}
    raylet = (cluster.logs / "raylet.out").read_text(errors="replace")
    assert len(node_ids) == 1 and node_ids.pop() in raylet  # the cluster's one node
    ndcg = summary(done.stdout)["test"]["seen_excluded"]["ndcg@10"]
    assert math.isfinite(ndcg) and ndcg > 0.5  # the next item is the last one's successor: learnable


def test_stopping_the_cluster_leaves_no_ray_process(cluster):
    """Runs last: the cluster had processes, and after the stop none of them (nor a new one) is left."""
    assert_stops_cleanly(cluster)
