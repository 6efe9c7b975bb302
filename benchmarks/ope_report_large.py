"""`seqrec ope-report` on a 100,000-item world log with sparse action distributions: wall time and peak memory.

A `WorldConfig(n_items=--n-items)` world is logged by the `softmax` logger over its popularity
(`--steps` user-steps, exact propensities, sessions). The two candidates are sparse `.npz`
files (`evaluation.cli_inputs.read_sparse_npz`): every row lists the world's `T` most popular items, with
probabilities proportional to their popularity squared (sharper than the logger) and total mass `1 - rest`,
the rest spread uniformly over the other items; `T = --top, rest = --rest` and `T = --top / 10,
rest = --rest / 4`, so the report ranks two. The logger covers every item, so the importance weights are
exact. `popularity_value` is `sum_a pi(a) popularity(a)` (the world's mean click probability of each item
over its users): a reference for the estimates, not their exact truth, since logged users are mid-session.
The log has sessions (one item per step), so the command is run twice, each time in a child process that
reports its own peak resident memory (`getrusage(RUSAGE_SELF)`): with `--no-sequential` (bandit estimators
only) and with the sequential section (PDIS, WPDIS, seq-DR, WDR, seq-Switch-DR, FQE and the risk section on
the first `--horizon` steps of each session), whose `evaluate_sessions` time per candidate the child also
reports. The bar is 24 GB. A dense equivalent would hold `[rows, N]` float64 arrays (16 GB each at 20,000
rows and 100,000 items) for the action distribution and the reward model, and `[E, H, N]` ones for FQE.

`--dense-check` (small catalogues: it writes `[rows, N]` float64 files) runs a third report on the first
candidate as the sparse `.npz`, as its dense `.npy`, and as that `.npy` perturbed by a relative 1e-6
(renormalised): the sparse and dense sequential estimates should differ no more than a perturbation that
small moves them (FQE's fit amplifies float rounding).

Prints one JSON line.

    python benchmarks/ope_report_large.py [--quick] [--n-items 100000] [--steps 20000] [--top 100] [--horizon 20]
        [--dense-check]
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

BAR_GIB = 24.0
CHILD_FIGURES = "ope_report_large figures: "
"""The prefix of the child's own figures (peak RSS, time in `evaluate_sessions`) on its stderr."""
CHILD = f"""
import json, resource, sys, time, typer
import evaluation.session_ope as session_ope
from evaluation.cli import ope_report_command
evaluate_sessions, sequential_seconds = session_ope.evaluate_sessions, []
def timed_evaluate_sessions(**kwargs):
    started = time.perf_counter()
    try:
        return evaluate_sessions(**kwargs)
    finally:
        sequential_seconds.append(time.perf_counter() - started)
session_ope.evaluate_sessions = timed_evaluate_sessions  # the command imports it at call time
app = typer.Typer()
@app.callback()
def root() -> None:
    "seqrec"
app.command("ope-report")(ope_report_command)
try:
    app(sys.argv[1:])
finally:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    figures = {{"peak_rss_kib": peak_kib, "sequential_seconds": sequential_seconds}}
    sys.stderr.write({CHILD_FIGURES!r} + json.dumps(figures) + "\\n")
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
SEQUENTIAL_ESTIMATORS = ("PDIS", "WPDIS", "seq-DR", "WDR", "seq-Switch-DR", "FQE")


def report_estimates(markdown: str, names: tuple[str, ...] = BANDIT_ESTIMATORS) -> list[dict[str, list[str]]]:
    """Each candidate's estimates `names` as written in `report.md`: `{estimator: [value, lower, upper]}`,
    in the order of `--policy`."""
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in names:
            rows.append(cells)
    k = len(names)
    return [{r[0]: r[1:4] for r in rows[i : i + k]} for i in range(0, len(rows), k)]


def run_report(command: list[str], out: Path, *extra: str) -> dict:
    """Run `seqrec ope-report` (`command` + `--out out` + `extra`) in a child process: its wall time, its own
    figures and stdout, and the report's estimates."""
    started = time.perf_counter()
    run = subprocess.run([*command, "--out", str(out), *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        sys.stderr.write(run.stdout + run.stderr)
        raise SystemExit(f"ope-report failed with exit code {run.returncode}")
    figures = next(
        json.loads(line[len(CHILD_FIGURES) :])
        for line in run.stderr.splitlines()
        if line.startswith(CHILD_FIGURES)
    )
    markdown = (out / "report.md").read_text(encoding="utf-8")
    return {
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(figures["peak_rss_kib"] / 2**20, 3),
        "sequential_seconds": [round(t, 1) for t in figures["sequential_seconds"]],
        "stdout": run.stdout,
        "files": sorted(p.name for p in out.iterdir()),
        "estimates": report_estimates(markdown),
        "sequential_estimates": report_estimates(markdown, SEQUENTIAL_ESTIMATORS),
    }


def dense_check(arrays: dict[str, np.ndarray], n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The `[rows, N]` dense form of a candidate's `.npz` arrays, and that form perturbed by a relative 1e-6
    (seeded, renormalised)."""
    from evaluation.ope.sparse import SparseActionDist

    dist = SparseActionDist.checked(arrays["items"], arrays["probs"], arrays["rest"], n_actions=n_items)
    dense = dist.dense()[:, :, 0]
    noise = np.random.default_rng(seed).standard_normal(dense.shape)
    perturbed = dense * (1.0 + 1e-6 * noise)
    return dense, perturbed / perturbed.sum(axis=1, keepdims=True)


def relative_differences(run: dict) -> dict[str, dict[str, float]]:
    """Per sequential estimator of a `--dense-check` report: |sparse - dense| / |dense| and |perturbed -
    dense| / |dense| of the point estimates (report.md's four decimals)."""
    sparse, dense, perturbed = run["sequential_estimates"]
    out = {}
    for name, (value, _, _) in dense.items():
        reference = float(value)
        out[name] = {
            "sparse_vs_dense": abs(float(sparse[name][0]) - reference) / abs(reference),
            "perturbed_vs_dense": abs(float(perturbed[name][0]) - reference) / abs(reference),
        }
    return {k: {kk: float(f"{vv:.3g}") for kk, vv in v.items()} for k, v in out.items()}


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
    parser.add_argument("--horizon", type=int, default=20, help="steps of each session evaluated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dense-check",
        action="store_true",
        help="also compare the first candidate's sparse, dense and perturbed-dense reports (small N only)",
    )
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
            "--n-bootstrap", str(args.n_bootstrap), "--seed", str(args.seed), "--horizon", str(args.horizon),
        ]  # fmt: skip
        policies = ["--policy", str(tmp / "top_items.npz"), "--policy", str(tmp / "few_top_items.npz")]
        bandit = run_report(command, tmp / "bandit", *policies, "--no-sequential")
        sequential = run_report(command, tmp / "sequential", *policies)
        check = None
        if args.dense_check:
            for name, array in zip(
                ("top_items_dense", "top_items_perturbed"),
                dense_check(candidates["top_items"], args.n_items, args.seed),
                strict=True,
            ):
                np.save(tmp / f"{name}.npy", array)
            policies = [
                str(tmp / f) for f in ("top_items.npz", "top_items_dense.npy", "top_items_perturbed.npy")
            ]
            check = run_report(command, tmp / "dense_check", *[x for p in policies for x in ("--policy", p)])
            check = {
                "seconds": check["seconds"],
                "peak_rss_gib": check["peak_rss_gib"],
                "relative_differences": relative_differences(check),
                "bandit_equal": check["estimates"][0] == check["estimates"][1],
                "sequential_estimates": check["sequential_estimates"],
            }
    session = log.frame.groupby("session_id").size()
    for run in (bandit, sequential):
        run["report_lines"] = [
            line
            for line in run.pop("stdout").splitlines()
            if line.startswith(("top_items", "few_top_items", "recommendation"))
        ]
    peak_gib = max(bandit["peak_rss_gib"], sequential["peak_rss_gib"])
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
                "horizon": args.horizon,
                "sessions": len(session),
                "mean_session_length": round(float(session.mean()), 2),
                "log_seconds": round(log_s, 1),
                "bar_gib": BAR_GIB,
                "within_bar": peak_gib < BAR_GIB,
                "bandit_only": bandit,
                "with_sequential": sequential,
                "dense_check": check,
                "logged_click_rate": round(float(log.frame["click"].mean()), 4),
                "popularity_value": {
                    k: round(popularity_value(v, popularity), 4) for k, v in candidates.items()
                },
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
    )


if __name__ == "__main__":
    main()
