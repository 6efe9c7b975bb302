"""`seqrec ope-report` on a 100,000-item world log with sparse action distributions: wall time and peak memory.

A `WorldConfig(n_items=--n-items)` world is logged by the `softmax` logger over its popularity
(`--steps` user-steps, exact propensities, sessions). The two candidates are sparse `.npz`
files (`evaluation.cli_inputs.read_sparse_npz`): every row lists the world's `T` most popular items, with
probabilities proportional to their popularity squared (sharper than the logger) and total mass `1 - rest`,
the rest spread uniformly over the other items; `T = --top, rest = --rest` and `T = --top / 10,
rest = --rest / 4`, so the report ranks two. The logger covers every item, so the importance weights are
exact. `popularity_value` is `sum_a pi(a) popularity(a)` (the world's mean click probability of each item
over its users): a reference for the estimates, not their exact truth, since logged users are mid-session.
The command runs in a child process, so its peak resident memory (`getrusage(RUSAGE_CHILDREN)`) is the
report's alone; the issue's bar is 24 GB. Its dense equivalent would hold `[rows, N]` float64 arrays
(16 GB each at 20,000 rows and 100,000 items) for the action distribution and the reward model.

Prints one JSON line.

    python benchmarks/ope_report_large.py [--quick] [--n-items 100000] [--steps 20000] [--top 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BAR_GIB = 24.0
CHILD = """
import sys, typer
from evaluation.cli import ope_report_command
app = typer.Typer()
@app.callback()
def root() -> None:
    "seqrec"
app.command("ope-report")(ope_report_command)
app(sys.argv[1:])
"""


def sparse_policy(popularity: np.ndarray, n_rows: int, top: int, rest: float) -> dict[str, np.ndarray]:
    """The `.npz` arrays of a candidate: the `top` most popular items, probabilities proportional to their
    popularity squared, mass `1 - rest`; the same distribution on each of `n_rows` rows."""
    listed = np.argsort(-popularity, kind="stable")[:top]
    weight = popularity[listed] ** 2
    probs = (1.0 - rest) * weight / weight.sum()
    return {
        "items": np.broadcast_to(listed.astype(np.int32), (n_rows, top)).copy(),
        "probs": np.broadcast_to(probs.astype(np.float32), (n_rows, top)).copy(),
        "rest": np.full(n_rows, rest, dtype=np.float32),
    }


def popularity_value(arrays: dict[str, np.ndarray], popularity: np.ndarray) -> float:
    """`sum_a pi(a) popularity(a)` of a candidate's first row (every row is the same)."""
    items, probs, rest = arrays["items"][0], arrays["probs"][0].astype(np.float64), float(arrays["rest"][0])
    unlisted = (popularity.sum() - popularity[items].sum()) / (len(popularity) - len(items))
    return float(probs @ popularity[items] + rest * unlisted)


BANDIT_ESTIMATORS = ("DM", "IPS", "SNIPS", "DR", "SNDR", "Switch-DR", "DRos")


def report_estimates(markdown: str) -> list[dict[str, list[str]]]:
    """Each candidate's bandit estimates as written in `report.md`: `{estimator: [value, lower, upper]}`,
    in the order of `--policy`."""
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in BANDIT_ESTIMATORS:
            rows.append(cells)
    k = len(BANDIT_ESTIMATORS)
    return [{r[0]: r[1:4] for r in rows[i : i + k]} for i in range(0, len(rows), k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="20,000 items, 3,000 steps, 200 bootstrap samples"
    )
    parser.add_argument("--n-items", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=20_000, help="logged user-steps (rows of the log)")
    parser.add_argument("--top", type=int, default=100, help="items listed per row of the sparse policy")
    parser.add_argument("--rest", type=float, default=0.2, help="mass of the unlisted items")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.n_items, args.steps, args.n_bootstrap = 20_000, 3_000, 200

    from recsim_env.world import UserWorld, WorldConfig
    from recsim_env.world.logging import log_world

    world_config = WorldConfig(n_items=args.n_items)
    started = time.perf_counter()
    log = log_world(
        "softmax",
        steps=args.steps,
        seed=args.seed,
        world_config=world_config,
        num_envs=64,
        progress=sys.stderr.isatty(),
    )
    log_s = time.perf_counter() - started
    popularity = UserWorld(world_config).item_popularity()
    n_rows = len(log.frame)
    candidates = {
        "top_items": sparse_policy(popularity, n_rows, args.top, args.rest),
        "few_top_items": sparse_policy(popularity, n_rows, max(1, args.top // 10), args.rest / 4),
    }
    with tempfile.TemporaryDirectory(prefix="ope_report_large_") as tmp:
        tmp = Path(tmp)
        log.to_parquet(tmp / "log.parquet")
        for name, arrays in candidates.items():
            np.savez(tmp / f"{name}.npz", **arrays)
        command = [
            sys.executable, "-c", CHILD, "ope-report",
            "--logs", str(tmp / "log.parquet"),
            "--policy", str(tmp / "top_items.npz"), "--policy", str(tmp / "few_top_items.npz"),
            "--out", str(tmp / "report"),
            "--n-bootstrap", str(args.n_bootstrap), "--seed", str(args.seed),
        ]  # fmt: skip
        started = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True)
        report_s = time.perf_counter() - started
        if run.returncode != 0:
            sys.stderr.write(run.stdout + run.stderr)
            raise SystemExit(f"ope-report failed with exit code {run.returncode}")
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # Linux: KiB
        written = sorted(p.name for p in (tmp / "report").iterdir())
        estimates = report_estimates((tmp / "report" / "report.md").read_text(encoding="utf-8"))
    lines = [
        line
        for line in run.stdout.splitlines()
        if line.startswith(("top_items", "few_top_items", "recommendation"))
    ]
    print(
        json.dumps(
            {
                "benchmark": "ope_report_large",
                "quick": args.quick,
                "n_items": args.n_items,
                "log_rows": len(log.frame),
                "top": args.top,
                "rest": args.rest,
                "n_bootstrap": args.n_bootstrap,
                "log_seconds": round(log_s, 1),
                "report_seconds": round(report_s, 1),
                "report_peak_rss_gib": round(peak_gib, 3),
                "bar_gib": BAR_GIB,
                "within_bar": peak_gib < BAR_GIB,
                "report_lines": lines,
                "logged_click_rate": round(float(log.frame["click"].mean()), 4),
                "popularity_value": {
                    k: round(popularity_value(v, popularity), 4) for k, v in candidates.items()
                },
                "estimates": estimates,
                "files": written,
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
    )


if __name__ == "__main__":
    main()
