"""`seqrec train --backend rllib` on a real local Ray cluster, reached through `RAY_ADDRESS`.

The module starts one head node with `ray start --head` (its own temp dir, token file and ports,
OS-chosen worker ports), trains a tiny PPO run with two env runners against it in a subprocess, resumes
the run on the cluster, evaluates it, then stops the cluster and checks that none of its processes is
left. That the run used the cluster's workers is read from the cluster's own logs: the driver's
core-worker log (named with the driver's pid) and one worker log per `SingleAgentEnvRunner` actor.
"""

from __future__ import annotations

import csv
import json
import math

import pytest

from tests.optional import import_extra  # noqa: E402
from tests.ray_cluster import (
    CLUSTER_MARKS,
    Cluster,
    actor_logs,
    assert_stops_cleanly,
    cluster_fixture,
    driver_logs,
    run_seqrec,
)

import_extra("ray", extra="rllib")

pytestmark = CLUSTER_MARKS

ENV_RUNNER_ACTOR = "SingleAgentEnvRunner"
"""The actor class of an env runner (named at the top of its worker log)."""
COMMAND_TIMEOUT_S = 600
TRAIN_OPTIONS = [
    "--backend", "rllib", "--algo", "ppo", "--env", "SeqRec-v0",
    "--env-config", json.dumps({"max_steps": 20}),
    "--encoder-config", json.dumps({"d_model": 16, "n_layers": 1}),
    "--algo-config", json.dumps({"train_batch_size_per_learner": 256, "minibatch_size": 128, "num_epochs": 1}),
    "--num-env-runners", "2", "--num-envs", "8", "--eval-episodes", "4", "--eval-interval", "512",
    "--stop-timesteps", "512", "--no-progress",
]  # fmt: skip


cluster = cluster_fixture(num_cpus=3)


def env_runner_logs(cluster: Cluster) -> set[str]:
    """The cluster's worker logs that belong to an env runner actor."""
    return actor_logs(cluster, ENV_RUNNER_ACTOR)


@pytest.fixture(scope="module")
def cluster_run(cluster, tmp_path_factory):
    """A tiny PPO run trained with two env runners on the cluster: `(run dir, env runner logs)`."""
    out = tmp_path_factory.mktemp("rllib_cluster") / "run"
    before = env_runner_logs(cluster)
    done, pid = run_seqrec(cluster, "train", *TRAIN_OPTIONS, "--out", str(out), timeout_s=COMMAND_TIMEOUT_S)
    assert "policy saved in" in done.stdout
    assert driver_logs(cluster, pid), f"the driver (pid {pid}) never joined the cluster at {cluster.address}"
    return out, env_runner_logs(cluster) - before


def test_training_on_the_cluster_uses_its_two_env_runners(cluster_run):
    out, runners = cluster_run
    assert len(runners) == 2, runners  # --num-env-runners 2, each an actor in a worker of the cluster
    progress = json.loads((out / "state" / "progress.json").read_text())
    assert progress["timesteps"] >= 512
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and int(rows[-1]["timesteps"]) == progress["timesteps"]
    assert all(float(row["env_steps_per_s"]) > 0 for row in rows)
    assert (out / "policy" / "weights.safetensors").is_file() and (out / "checkpoint").is_dir()


def test_resume_on_the_cluster_continues_the_step_count(cluster, cluster_run):
    out, _ = cluster_run
    trained = json.loads((out / "state" / "progress.json").read_text())["timesteps"]
    before = env_runner_logs(cluster)
    _, pid = run_seqrec(
        cluster, "train", "--resume", str(out), "--stop-timesteps", "1024", "--no-progress",
        timeout_s=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    assert driver_logs(cluster, pid)
    assert len(env_runner_logs(cluster) - before) == 2  # the resumed run's own two env runners
    resumed = json.loads((out / "state" / "progress.json").read_text())["timesteps"]
    assert resumed >= 1024
    with open(out / "metrics.csv") as handle:
        timesteps = [int(row["timesteps"]) for row in csv.DictReader(handle)]
    assert trained in timesteps and timesteps == sorted(timesteps) and timesteps[-1] == resumed


def test_a_run_trained_on_the_cluster_evaluates(cluster, cluster_run):
    out, _ = cluster_run
    done, _ = run_seqrec(
        cluster, "evaluate", str(out), "--episodes", "4", "--seed", "1", "--json", timeout_s=COMMAND_TIMEOUT_S
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["episodes"] == 4 and math.isfinite(report["mean_return"]), report


def test_stopping_the_cluster_leaves_no_ray_process(cluster, cluster_run):
    """Runs last: the cluster had processes, and after the stop none of them (nor a new one) is left."""
    assert_stops_cleanly(cluster)
