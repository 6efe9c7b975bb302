"""DT4IER against plain DT, its ablations and behaviour cloning, trained offline on world logs (issue 6).

For each seed: logs `--steps` user-steps of an epsilon-greedy logger (epsilon `--epsilon` over the
world's popularity scorer, 3 sessions per user, `--log-envs` users logged in parallel so few
trajectories are cut by the end of the log), builds DT4IER's trajectories once, and trains every
variant on them: DT4IER, plain DT (linear return embedding, no balancing, no contrastive term), the
three ablations (no adaptive weights, no reward encoder, no contrastive loss) and behaviour cloning
with the same encoder and transformer (no return tokens). Each policy is rolled out in the world
(truth) for `--episodes` episodes of 3 sessions (as logged), conditioned on the `--target-quantile` of
the training returns; the logger is a reference row. Reported per policy (mean +- std over seeds):
immediate reward per step (the env's reward, `click`), mean return gap in days (over all session ends;
lower is better), mean return per episode and session length.

Acceptance (issue 6): DT4IER beats BC on both signals (more clicks per step, shorter return gap) and
plain DT on at least one without losing more than 2% on the other. Prints a Markdown table on stderr and
ONE JSON line on stdout.

    python benchmarks/dt4ier_world.py [--quick] [--seeds 3] [--steps 30000] [--epsilon 0.5]
        [--train-steps 2000] [--episodes 1000] [--threads 1] [--device auto]
    python benchmarks/dt4ier_world.py --seed 2 --seeds 1 > s2.json   # one seed per process, then
    python benchmarks/dt4ier_world.py --merge s0.json s1.json s2.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from agents import dt4ier as D
from agents.baselines import WorldLoggerPolicy
from recsim_env.rollout import rollout
from recsim_env.world.logging import log_world

SESSIONS = 3  # sessions per logged user and per evaluation episode
ROWS = {
    "dt4ier": "DT4IER",
    "dt": "plain DT",
    "no_weights": "DT4IER w/o adaptive weights",
    "no_reward_encoder": "DT4IER w/o reward encoder",
    "no_contrastive": "DT4IER w/o contrastive loss",
    "bc": "BC (same encoder)",
}


def evaluate(policy, args: argparse.Namespace, seed: int) -> dict[str, float]:
    """Rollout truth in the world: immediate reward per step, mean return gap, return, session length."""
    stats = rollout(policy, n_episodes=args.episodes, seed=20_000 + seed, sessions_per_episode=SESSIONS)
    return {
        "immediate": stats.click_rate,
        "return_gap": stats.return_gap_days,
        "return": stats.mean_return,
        "session_length": stats.session_length,
    }


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """Train every variant on one seed's logs; their rollout truth."""
    progress = not args.no_progress
    torch.manual_seed(seed)
    logs = log_world(
        "epsilon-greedy",
        steps=args.steps,
        seed=seed,
        epsilon=args.epsilon,
        sessions_per_user=SESSIONS,
        num_envs=args.log_envs,
        progress=progress,
    )
    base = D.DT4IERConfig(
        steps=args.train_steps,
        target_quantile=args.target_quantile,
        seed=seed,
        device=args.device,
    )
    data = D.trajectories_from_logs(logs, base)
    results = {
        "logger": evaluate(WorldLoggerPolicy("epsilon-greedy", epsilon=args.epsilon, seed=seed), args, seed)
    }
    train_s, final_ce = {}, {}
    for variant in args.variants:
        start = time.perf_counter()
        policy, train_stats = D.train(dataclasses.replace(base, variant=variant), data, progress=progress)
        train_s[variant] = time.perf_counter() - start
        final_ce[variant] = train_stats["final_ce"]  # training cross-entropy over the last 10% of steps
        results[variant] = evaluate(policy, args, seed)
    return {
        "policies": results,
        "train_s": train_s,
        "final_ce": final_ce,
        "logged_immediate": float(data.reward[:, 0].mean()),
        "trajectories": int(len(np.unique(data.start))),
    }


def summarise(runs: list[dict]) -> dict:
    """mean +- std over seeds of every (policy, metric); the acceptance checks on the means."""

    def stat(values):
        values = np.asarray(values, dtype=float)
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}

    metrics = ("immediate", "return_gap", "return", "session_length")
    policies = {
        name: {m: stat([r["policies"][name][m] for r in runs]) for m in metrics}
        for name in runs[0]["policies"]
    }
    checks = {}
    if {"dt4ier", "bc"} <= set(policies):
        mean = {name: {m: policies[name][m]["mean"] for m in metrics} for name in policies}
        checks["beats_bc_on_immediate"] = mean["dt4ier"]["immediate"] > mean["bc"]["immediate"]
        checks["beats_bc_on_return_gap"] = mean["dt4ier"]["return_gap"] < mean["bc"]["return_gap"]
        if "dt" in mean:
            better_immediate = mean["dt4ier"]["immediate"] > mean["dt"]["immediate"]
            better_gap = mean["dt4ier"]["return_gap"] < mean["dt"]["return_gap"]
            immediate_within = mean["dt4ier"]["immediate"] >= 0.98 * mean["dt"]["immediate"]
            gap_within = mean["dt4ier"]["return_gap"] <= 1.02 * mean["dt"]["return_gap"]
            checks["beats_dt_on_one_within_2pct_on_other"] = bool(
                (better_immediate and gap_within) or (better_gap and immediate_within)
            )
        checks["accepted"] = all(checks.values())
    return {
        "policies": policies,
        "checks": checks,
        "train_s": [r["train_s"] for r in runs],
        "final_ce": [r["final_ce"] for r in runs],
    }


def markdown(summary: dict) -> str:
    """The table for benchmarks/RESULTS.md."""
    lines = [
        "| policy | immediate reward / step | mean return gap (days) | return / episode | session length |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in summary["policies"].items():
        cells = [
            f"{entry['immediate']['mean']:.4f} +- {entry['immediate']['std']:.4f}",
            f"{entry['return_gap']['mean']:.3f} +- {entry['return_gap']['std']:.3f}",
            f"{entry['return']['mean']:.2f} +- {entry['return']['std']:.2f}",
            f"{entry['session_length']['mean']:.1f} +- {entry['session_length']['std']:.1f}",
        ]
        lines.append(f"| {ROWS.get(name, name)} | " + " | ".join(cells) + " |")
    lines += ["", "Checks: " + ", ".join(f"{k}={v}" for k, v in summary["checks"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, small data and short training")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=30_000, help="logged user-steps for training")
    parser.add_argument("--log-envs", type=int, default=32, help="users logged in parallel")
    parser.add_argument("--epsilon", type=float, default=0.5)
    parser.add_argument("--train-steps", type=int, default=2000, help="gradient steps per variant")
    parser.add_argument("--target-quantile", type=float, default=0.9)
    parser.add_argument("--episodes", type=int, default=1000, help="rollout episodes per policy")
    parser.add_argument("--variants", type=str, default=",".join(D.VARIANTS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="FILE",
        help="summarise the per-seed runs in these earlier JSON outputs (e.g. one seed per process) instead of training",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.train_steps, args.episodes = 1, 15_000, 600, 300
    if args.threads:
        torch.set_num_threads(args.threads)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(D.VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {list(D.VARIANTS)}")
    started = time.perf_counter()
    runs = []
    if args.merge:
        settings = ("steps", "epsilon", "train_steps", "target_quantile", "episodes")
        first = None
        for path in args.merge:
            record = json.loads(Path(path).read_text().strip().splitlines()[-1])
            first = first or record
            differ = [key for key in settings if record[key] != first[key]]
            if differ:
                parser.error(f"--merge: {path} was run with other {differ} than {args.merge[0]}")
            runs.extend(record["runs"])
        for key in settings:
            setattr(args, key, first[key])
        args.seeds = len(runs)
    for k in range(0 if args.merge else args.seeds):
        runs.append({"seed": args.seed + k, **run_seed(args, args.seed + k)})
        brief = {name: round(entry["immediate"], 4) for name, entry in runs[-1]["policies"].items()}
        gaps = {name: round(entry["return_gap"], 3) for name, entry in runs[-1]["policies"].items()}
        print(f"seed {args.seed + k}: immediate {brief}; return gap {gaps}", file=sys.stderr, flush=True)
    summary = summarise(runs)
    print(markdown(summary), file=sys.stderr)
    result = {
        "benchmark": "dt4ier_world",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__} "
        f"{D.resolve_device(args.device).type} threads {torch.get_num_threads()}".strip(),
        "command": "python benchmarks/dt4ier_world.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "seeds": args.seeds,
        "steps": args.steps,
        "epsilon": args.epsilon,
        "train_steps": args.train_steps,
        "target_quantile": args.target_quantile,
        "episodes": args.episodes,
        "wall_s": round(time.perf_counter() - started, 1),
        **summary,
        "seed_list": [run["seed"] for run in runs],
        "runs": runs,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
