"""Memory of `seqrec data info` per logged row, against loading the whole log, in one run.

Writes a synthetic world-style log (the columns `log_world` writes: ids, timestamp, session, slate,
position, both propensities and the six world signals) of `--rows` rows with
`LoggedInteractions.to_parquet`, then, each in a fresh interpreter: `seqrec data info FILE --json`
(the `seqrec` entry point, called in-process after its imports), and the same statistics through
`load(FILE).stats()` (the whole table in memory) as the same-run baseline. Memory is the peak RSS
(`VmHWM`, reset once the command's imports are done) above the RSS at that moment (its start-up
memory), divided by the rows.
Prints one JSON line.

    python benchmarks/log_memory.py [--quick] [--rows N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _status_bytes(field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (peak) of this process, from /proc/self/status (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Make the peak RSS the current RSS (Linux >= 4.0), so that import-time peaks do not hide the work."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def write_log(path: Path, rows: int, seed: int = 0) -> dict:
    """A sorted synthetic log of `rows` rows (about 60 events per user, 10^5 items) at `path`."""
    import pandas as pd

    from recsim_env.data import IdMap, LoggedInteractions

    rng = np.random.default_rng(seed)
    n_users, n_items = max(1, rows // 60), 100_000
    users = np.sort(rng.integers(0, n_users, rows))
    timestamps = rng.uniform(0.0, 30 * 86400.0, rows)
    order = np.lexsort((timestamps, users))
    click = (rng.random(rows) < 0.2).astype(np.float64)
    frame = pd.DataFrame(
        {
            "user_id": users[order],
            "item_id": rng.integers(0, n_items, rows),
            "timestamp": timestamps[order],
            "click": click,
            "watch_time": click * rng.exponential(30.0, rows),
            **{
                name: (rng.random(rows) < 0.05).astype(np.float64) * click
                for name in ("like", "follow", "share")
            },
            "hate": (rng.random(rows) < 0.01).astype(np.float64),
            "session_id": np.arange(rows) // 20,
            "position": np.zeros(rows, dtype=np.int64),
            "slate_id": np.arange(rows),
            "propensity": np.full(rows, 1.0 / n_items),
            "position_propensity": np.full(rows, 1.0 / n_items),
        }
    )
    data = LoggedInteractions(
        frame,
        user_ids=IdMap(np.arange(n_users, dtype=np.int64)),
        item_ids=IdMap(np.arange(n_items, dtype=np.int64)),
        feedback_columns=("click", "watch_time", "like", "follow", "share", "hate"),
        name="synthetic-world-log",
    )
    data.to_parquet(path)
    return {
        "rows": rows,
        "users": n_users,
        "items": n_items,
        "file_mib": round(path.stat().st_size / 2**20, 1),
    }


def child(mode: str, path: str) -> dict:
    """Run one way of computing the statistics in this process; peak RSS above the start-up RSS."""
    if mode == "data_info":
        from recsim_env.cli import build_app

        app = build_app()
        _reset_peak()
        startup = _status_bytes("VmRSS")
        start = time.perf_counter()
        try:
            app(["data", "info", path, "--json"], standalone_mode=False)
        except SystemExit as exit_:  # typer exits 0 on success in some versions
            if exit_.code not in (0, None):
                raise
    else:
        from recsim_env.data import load

        _reset_peak()
        startup = _status_bytes("VmRSS")
        start = time.perf_counter()
        load(path).stats()
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "startup_mib": round(startup / 2**20, 1),
        "peak_above_startup": _status_bytes("VmHWM") - startup,
        "seconds": round(seconds, 2),
    }


def run_child(mode: str, path: Path) -> dict:
    command = [sys.executable, __file__, "--child", mode, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="500,000 rows instead of 4,000,000")
    parser.add_argument("--rows", type=int, default=None, help="rows of the log")
    parser.add_argument(
        "--workdir", default=None, help="where to write the log (default: a temporary directory)"
    )
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    rows = args.rows or (500_000 if args.quick else 4_000_000)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        path = Path(workdir) / "log.parquet"
        log = write_log(path, rows)
        results = {}
        for mode in ("data_info", "load_stats"):
            measured = run_child(mode, path)
            measured["bytes_per_row"] = round(measured["peak_above_startup"] / rows, 1)
            results[mode] = measured
            print(f"{mode}: {measured}", file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "log_memory",
                **log,
                **results,
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "python": platform.python_version(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
