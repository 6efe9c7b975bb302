"""The attainable ceiling: returns of the reference policies in the world, and the filter's click AUC.

Rolls out, on the same seeds, the log-based baselines (uniform, popularity, greedy: fit on
`--log-steps` uniform-logging world steps, as `seqrec evaluate` fits them), the two policies that see
only the observation but know the world (filter-myopic, filter-farsighted: `recsim_env.policies.filter`)
and the two oracles that read the hidden state, in two settings: the default `SeqRec-v0` (one session
of up to 50 steps) and a retention setting (`--sessions` sessions with `retention_weight` reward at
each session end). Then scores the filter's posterior click probability on held-out world steps
(`simulator_fidelity.world_filter_click_auc`: uniform recommendations in 3-session episodes with user
features, as `world_metrics` scores simulators; and in default-env episodes). Prints one JSON line.

    python benchmarks/reference_policies.py [--quick] [--episodes 1000] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from simulator_fidelity import world_filter_click_auc

from recsim_env.policies import (
    GreedyPolicy,
    LoggedItemStats,
    PopularityPolicy,
    UniformPolicy,
)
from recsim_env.policies.filter import reference_policy
from recsim_env.rollout import rollout
from recsim_env.world import UserWorld
from recsim_env.world.logging import log_world

POLICIES = (
    "uniform",
    "popularity",
    "greedy",
    "filter-myopic",
    "filter-farsighted",
    "myopic-oracle",
    "farsighted-oracle",
)


def returns_table(policies: dict, settings: dict, episodes: int, seed: int) -> dict:
    """Mean return (95% CI), session length and return gap of every policy in every setting."""
    table = {}
    for setting, env_kwargs in settings.items():
        table[setting] = {}
        for name, policy in policies.items():
            started = time.perf_counter()
            stats = rollout(policy, n_episodes=episodes, seed=seed, **env_kwargs)
            table[setting][name] = {
                "mean_return": round(stats.mean_return, 3),
                "ci95": [round(x, 3) for x in stats.return_ci95],
                "session_length": round(stats.session_length, 2),
                "return_gap_days": round(stats.return_gap_days, 3),
                "seconds": round(time.perf_counter() - started, 1),
            }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="200 episodes and 10,000 AUC steps")
    parser.add_argument(
        "--episodes", type=int, default=None, help="episodes per policy and setting (default 1000)"
    )
    parser.add_argument("--auc-steps", type=int, default=None, help="held-out steps per AUC (default 50,000)")
    parser.add_argument(
        "--log-steps", type=int, default=50_000, help="uniform-logging steps greedy learns from"
    )
    parser.add_argument(
        "--sessions", type=int, default=4, help="sessions per episode in the retention setting"
    )
    parser.add_argument("--retention-weight", type=float, default=5.0, help="retention setting's weight")
    parser.add_argument("--seed", type=int, default=0, help="logs use it, rollouts seed + 1, AUCs seed + 1")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads (1 suits the filter's small matrices; 0 = default)",
    )
    args = parser.parse_args()
    episodes = args.episodes or (200 if args.quick else 1000)
    auc_steps = args.auc_steps or (10_000 if args.quick else 50_000)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)

    started = time.perf_counter()
    world = UserWorld()
    stats = LoggedItemStats.from_logs(
        log_world("uniform", steps=args.log_steps, seed=args.seed, progress=False)
    )
    policies = {
        "uniform": UniformPolicy(world.n_items),
        "popularity": PopularityPolicy(stats),
        "greedy": GreedyPolicy(stats),
        **{name: reference_policy(name, world) for name in POLICIES[3:]},
    }
    settings = {
        "default": {},
        "retention": {"sessions_per_episode": args.sessions, "retention_weight": args.retention_weight},
    }
    table = returns_table(policies, settings, episodes, args.seed + 1)
    rollout_seconds = time.perf_counter() - started
    auc_started = time.perf_counter()
    click_auc = {
        "world_metrics_steps": world_filter_click_auc(auc_steps, args.seed + 1),
        "default_env_steps": world_filter_click_auc(
            auc_steps, args.seed + 1, sessions=1, user_features=False
        ),
    }
    checks = {
        setting: {
            "filter_myopic_between_greedy_and_oracle": rows["greedy"]["mean_return"]
            < rows["filter-myopic"]["mean_return"]
            < rows["myopic-oracle"]["mean_return"],
            "filter_farsighted_between_greedy_and_oracle": rows["greedy"]["mean_return"]
            < rows["filter-farsighted"]["mean_return"]
            < rows["farsighted-oracle"]["mean_return"],
            "filter_farsighted_beats_filter_myopic": rows["filter-farsighted"]["ci95"][0]
            > rows["filter-myopic"]["ci95"][1],
        }
        for setting, rows in table.items()
    }
    checks["click_auc_at_least_0.78"] = click_auc["world_metrics_steps"]["filter"] >= 0.78
    print(
        json.dumps(
            {
                "benchmark": "reference_policies",
                "episodes": episodes,
                "seed": args.seed,
                "settings": settings,
                "returns": table,
                "click_auc": click_auc,
                "auc_steps": auc_steps,
                "checks": checks,
                "rollout_seconds": round(rollout_seconds, 1),
                "auc_seconds": round(time.perf_counter() - auc_started, 1),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
