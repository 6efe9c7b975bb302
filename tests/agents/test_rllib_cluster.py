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
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("ray")

pytestmark = [
    pytest.mark.rllib,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the cluster's processes in /proc"),
]

ROOT = Path(__file__).parents[2]
ENV_RUNNER_ACTOR = ":actor_name:SingleAgentEnvRunner"
"""The line Ray writes at the top of an actor's worker log (`ray_constants.LOG_PREFIX_ACTOR_NAME` + class)."""
COMMAND_TIMEOUT_S = 600
TRAIN_OPTIONS = [
    "--backend", "rllib", "--algo", "ppo", "--env", "SeqRec-v0",
    "--env-config", json.dumps({"max_steps": 20}),
    "--encoder-config", json.dumps({"d_model": 16, "n_layers": 1}),
    "--algo-config", json.dumps({"train_batch_size_per_learner": 256, "minibatch_size": 128, "num_epochs": 1}),
    "--num-env-runners", "2", "--num-envs", "8", "--eval-episodes", "4", "--eval-interval", "512",
    "--stop-timesteps", "512", "--no-progress",
]  # fmt: skip


@dataclass(frozen=True)
class Cluster:
    """A running head node: its address, temp dir and the environment that reaches it."""

    address: str
    gcs_port: int
    temp_dir: Path
    env: dict[str, str]

    @property
    def logs(self) -> Path:
        return self.temp_dir / "session_latest" / "logs"


def _script(name: str) -> list[str]:
    """The console script `name` of this interpreter's environment (`seqrec`, `ray`)."""
    path = Path(sys.executable).with_name(name)
    if path.is_file():
        return [str(path)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"no {name!r} console script next to {sys.executable} or on PATH")
    return [found]


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free now (held open together so that none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handle.bind(("", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def _processes() -> dict[int, tuple[int, list[str]]]:
    """Every process now: `pid -> (parent pid, argv)`, read from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        table[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), argv)
    return table


def cluster_processes(temp_dir: Path, gcs_port: int) -> set[int]:
    """The cluster's processes: those naming its temp dir or its GCS address, and their descendants."""
    table = _processes()
    marker = str(temp_dir)

    def belongs(argv: list[str]) -> bool:
        return any(
            marker in arg or (arg.startswith("--address=") and arg.endswith(f":{gcs_port}")) for arg in argv
        )

    found = {pid for pid, (_, argv) in table.items() if belongs(argv)}
    while True:
        children = {pid for pid, (parent, _) in table.items() if parent in found} - found
        if not children:
            return found
        found |= children


def stop_cluster(temp_dir: Path, gcs_port: int, *, grace_s: float = 15.0) -> set[int]:
    """SIGTERM every process of the cluster, SIGKILL those left after `grace_s`; returns the survivors.

    Only this cluster's processes are signalled (`ray stop` would stop every Ray on the machine).
    """
    pids = cluster_processes(temp_dir, gcs_port)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            pids = {pid for pid in pids if _alive(pid)}
            if not pids:
                break
            time.sleep(0.2)
    return pids | cluster_processes(temp_dir, gcs_port)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster started with `ray start --head`; stopped (every process) afterwards."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayc", dir="/tmp"))  # short: Ray's socket paths must fit
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),  # not ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    names = (
        "--port", "--ray-client-server-port", "--node-manager-port", "--object-manager-port",
        "--metrics-export-port", "--dashboard-port", "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
    )  # fmt: skip
    ports = dict(zip(names, _free_ports(len(names))))
    command = [
        *_script("ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir),
        "--num-cpus", "3", "--object-store-memory", str(200 * 2**20), "--include-dashboard", "false",
        "--disable-usage-stats", "--min-worker-port", "0", "--max-worker-port", "0",
        *(str(item) for pair in ports.items() for item in pair),
    ]  # fmt: skip
    gcs_port = ports["--port"]
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        address = (temp_dir / "ray_current_cluster").read_text().strip()
        assert address.endswith(f":{gcs_port}"), address
        yield Cluster(
            address=address, gcs_port=gcs_port, temp_dir=temp_dir, env={**env, "RAY_ADDRESS": address}
        )
    finally:
        left = stop_cluster(temp_dir, gcs_port)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left running: {sorted(left)}"


def run_seqrec(cluster: Cluster, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """`seqrec ARGS` against the cluster (`RAY_ADDRESS` set); returns the result and the process id."""
    process = subprocess.Popen(
        [*_script("seqrec"), *args],
        env=cluster.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"seqrec {' '.join(args)} ran past {COMMAND_TIMEOUT_S} s:\n{stdout}\n{stderr}")
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert done.returncode == 0, f"seqrec {' '.join(args)} failed:\n{stdout}\n{stderr}"
    return done, process.pid


def env_runner_logs(cluster: Cluster) -> set[str]:
    """The cluster's worker logs that belong to an env runner actor."""
    found = set()
    for path in cluster.logs.glob("worker-*.out"):
        with open(path, errors="replace") as handle:
            if any(line.startswith(ENV_RUNNER_ACTOR) for line in handle):
                found.add(path.name)
    return found


def driver_logs(cluster: Cluster, pid: int) -> list[Path]:
    """The cluster's core-worker logs of the driver process `pid` (one per job it ran)."""
    return sorted(cluster.logs.glob(f"python-core-driver-*_{pid}.log"))


@pytest.fixture(scope="module")
def cluster_run(cluster, tmp_path_factory):
    """A tiny PPO run trained with two env runners on the cluster: `(run dir, env runner logs)`."""
    out = tmp_path_factory.mktemp("rllib_cluster") / "run"
    before = env_runner_logs(cluster)
    done, pid = run_seqrec(cluster, "train", *TRAIN_OPTIONS, "--out", str(out))
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
    _, pid = run_seqrec(cluster, "train", "--resume", str(out), "--stop-timesteps", "1024", "--no-progress")
    assert driver_logs(cluster, pid)
    assert len(env_runner_logs(cluster) - before) == 2  # the resumed run's own two env runners
    resumed = json.loads((out / "state" / "progress.json").read_text())["timesteps"]
    assert resumed >= 1024
    with open(out / "metrics.csv") as handle:
        timesteps = [int(row["timesteps"]) for row in csv.DictReader(handle)]
    assert trained in timesteps and timesteps == sorted(timesteps) and timesteps[-1] == resumed


def test_a_run_trained_on_the_cluster_evaluates(cluster, cluster_run):
    out, _ = cluster_run
    done, _ = run_seqrec(cluster, "evaluate", str(out), "--episodes", "4", "--seed", "1", "--json")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["episodes"] == 4 and math.isfinite(report["mean_return"]), report


def test_stopping_the_cluster_leaves_no_ray_process(cluster, cluster_run):
    """Runs last: the cluster had processes, and after the stop none of them (nor a new one) is left."""
    assert cluster_processes(cluster.temp_dir, cluster.gcs_port)
    assert stop_cluster(cluster.temp_dir, cluster.gcs_port) == set()
