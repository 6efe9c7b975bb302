"""A real local Ray cluster for tests: one head node started with `ray start --head`, stopped whole.

The head runs in its own temp dir under /tmp (short: Ray's socket paths must fit in 107 bytes), with a
fresh auth token there, on ports the OS reported free and OS-chosen worker ports, so it does not
collide with another Ray on the machine. `running_cluster` stops it itself by signalling only the
processes whose command line names its temp dir or GCS address, and their descendants (`ray stop`
would stop every Ray on the machine), and fails if any is left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (where `seqrec` runs)."""
CLUSTER_MARKS = [
    pytest.mark.rllib,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the cluster's processes in /proc"),
]
"""The `pytestmark` of a module that runs commands on a real cluster."""


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


def script(name: str) -> list[str]:
    """The console script `name` of this interpreter's environment (`seqrec`, `ray`)."""
    path = Path(sys.executable).with_name(name)
    if path.is_file():
        return [str(path)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"no {name!r} console script next to {sys.executable} or on PATH")
    return [found]


def free_ports(count: int) -> list[int]:
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


@contextlib.contextmanager
def running_cluster(*, num_cpus: int) -> Iterator[Cluster]:
    """A one-node Ray cluster with `num_cpus` logical CPUs; stopped (every process) afterwards, and an
    assertion error if any of its processes is left."""
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
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    command = [
        *script("ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir),
        "--num-cpus", str(num_cpus), "--object-store-memory", str(200 * 2**20), "--include-dashboard", "false",
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


def cluster_fixture(*, num_cpus: int):
    """A module-scoped fixture: one `running_cluster(num_cpus=num_cpus)` for every test of the module."""

    @pytest.fixture(scope="module")
    def cluster() -> Iterator[Cluster]:
        with running_cluster(num_cpus=num_cpus) as head:
            yield head

    return cluster


def run_seqrec(cluster: Cluster, *args: str, timeout_s: float = 300) -> tuple[subprocess.CompletedProcess, int]:
    """`seqrec ARGS` against the cluster (`RAY_ADDRESS` set), from the repository root; returns the
    result and the process id, and fails the test when it exits non-zero or runs past `timeout_s`."""
    process = subprocess.Popen(
        [*script("seqrec"), *args],
        env=cluster.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"seqrec {' '.join(args)} ran past {timeout_s} s:\n{stdout}\n{stderr}")
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert done.returncode == 0, f"seqrec {' '.join(args)} failed:\n{stdout}\n{stderr}"
    return done, process.pid


def assert_stops_cleanly(cluster: Cluster) -> None:
    """The cluster has processes, and after `stop_cluster` none of them (nor a new one) is left."""
    assert cluster_processes(cluster.temp_dir, cluster.gcs_port)
    assert stop_cluster(cluster.temp_dir, cluster.gcs_port) == set()


def actor_logs(cluster: Cluster, actor_class: str) -> set[str]:
    """The cluster's worker logs that belong to an actor of class `actor_class` (Ray writes
    `:actor_name:CLASS` at the top of an actor's worker log, `ray_constants.LOG_PREFIX_ACTOR_NAME`)."""
    marker = f":actor_name:{actor_class}"
    found = set()
    for path in cluster.logs.glob("worker-*.out"):
        with open(path, errors="replace") as handle:
            if any(line.startswith(marker) for line in handle):
                found.add(path.name)
    return found


def driver_logs(cluster: Cluster, pid: int) -> list[Path]:
    """The cluster's core-worker logs of the driver process `pid` (one per job it ran)."""
    return sorted(cluster.logs.glob(f"python-core-driver-*_{pid}.log"))


def summary(stdout: str) -> dict:
    """The last JSON line a seqrec command printed."""
    import json

    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def run_in_process(name: str, command, args: list[str]) -> dict:
    """`seqrec NAME ARGS` in this process, without Ray (typer's CliRunner); returns its summary line."""
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command(name)(command)
    app.command("unused")(lambda: None)  # two commands: typer keeps the subcommand name
    result = CliRunner().invoke(app, [name, *args])
    assert result.exit_code == 0, result.output
    return summary(result.output)


TRAIN_WORKER_ACTOR = "RayTrainWorker"
"""The actor class of a Ray Train worker (named at the top of its worker log)."""
