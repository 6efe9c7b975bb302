"""Does `seqrec ope-report` rank candidate policies in the world's true order? (issue 25 acceptance)

Logs `--steps` user-steps of the world's epsilon-greedy logger (epsilon 0.3 over the popularity scorer,
propensities recorded, one session per user) on a catalogue of `--n-items` items, keeping only the sessions
that ended before logging stopped (a session cut off by the end of the log would understate every return).
Three candidates are epsilon-greedy over the same scorer with epsilon 0.1, 0.5 and 0.8: context-free, so
their action distribution on the log is known exactly, and their values differ through the world's
dynamics (satiation, leaving), not only the next click.

The candidates go to the report as `.npy` action distributions, through the command's own code
(`evaluation.cli.build_ope_report`, with sessions: sequential estimators, FQE, risk, ranking by the lower
bound of seq-Switch-DR). The truth is each policy's mean return over the first `--horizon` steps of a
session, from `--truth-episodes` rollouts in the world. Prints one JSON line: truths with standard errors,
the report's estimates and order, the true order, whether they match, and the recommendation.

    python benchmarks/ope_ranking.py [--quick] [--steps N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evaluation.cli import OPEReportOptions, build_ope_report
from recsim_env.data import LoggedInteractions
from recsim_env.envs import SeqRecVectorEnv
from recsim_env.world import UserWorld, WorldConfig
from recsim_env.world.logging import LoggedStep, LoggingPolicy, generate_logs, world_logs

CANDIDATE_EPSILONS = (0.1, 0.5, 0.8)
LOGGER_EPSILON = 0.3


def item_probabilities(world: UserWorld, epsilon: float) -> np.ndarray:
    """`[N]` epsilon-greedy over the world's popularity scorer (context-free)."""
    policy = LoggingPolicy.for_world("epsilon-greedy", world, epsilon=epsilon)
    return policy.probabilities(np.zeros((1, world.n_items), dtype=bool))[0]


def log_complete_sessions(world: UserWorld, *, steps: int, seed: int, num_envs: int) -> LoggedInteractions:
    """The logger's sessions in the world, without those still running when logging stopped."""
    last: dict[str, LoggedStep] = {}

    def keep_last(step: LoggedStep) -> None:
        last["step"] = step

    logger = LoggingPolicy.for_world("epsilon-greedy", world, epsilon=LOGGER_EPSILON)
    interactions, items, users = generate_logs(
        logger,
        steps=steps,
        seed=seed,
        num_envs=num_envs,
        sessions_per_user=1,
        on_step=keep_last,
        world_config=world.config,
    )
    final = last["step"]
    # Still running when logging stopped, or stepped at the end without its row logged (over the budget).
    unlogged = ~final.started & ~np.isin(np.arange(len(final.episode)), final.live)
    running = final.episode[~(final.terminated | final.truncated) | unlogged]
    interactions = interactions[~interactions["user_id"].isin(running)]
    users = users[users["user_id"].isin(interactions["user_id"].unique())]
    return world_logs(world, interactions, items, users, policy="epsilon-greedy")


def rollout_value(
    world: UserWorld,
    probs: np.ndarray,
    *,
    horizon: int,
    gamma: float,
    episodes: int,
    seed: int,
    num_envs: int,
) -> tuple[float, float]:
    """Mean and standard error of `sum_{t < horizon} gamma^t r_t` over fresh one-session episodes."""
    env = SeqRecVectorEnv(num_envs=num_envs, sessions_per_episode=1, world_config=world.config)
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(probs)
    returns = []
    for wave in range(-(-episodes // num_envs)):
        env.reset(seed=seed * 1_000_003 + wave * num_envs)
        alive = np.ones(num_envs, bool)
        total = np.zeros(num_envs)
        for t in range(horizon):
            action = np.minimum(
                np.searchsorted(cdf, rng.random(num_envs) * cdf[-1], side="right"), len(probs) - 1
            )
            _, reward, terminated, truncated, _ = env.step(action)
            total += np.where(alive, gamma**t * reward, 0.0)
            alive &= ~(terminated | truncated)
        returns.append(total)
    g = np.concatenate(returns)[:episodes]
    return float(g.mean()), float(g.std(ddof=1) / np.sqrt(len(g)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60_000, help="logged user-steps")
    parser.add_argument("--n-items", type=int, default=50)
    parser.add_argument("--n-categories", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=20, help="session steps evaluated")
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument(
        "--truth-episodes", type=int, default=40_000, help="rollouts per policy for the truth"
    )
    parser.add_argument("--n-bootstrap", type=int, default=500)
    parser.add_argument("--fqe-steps", type=int, default=200, help="FQE gradient steps per backup")
    parser.add_argument("--num-envs", type=int, default=64, help="logging sub-envs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    parser.add_argument("--quick", action="store_true", help="15,000 steps, fewer rollouts and replicates")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.truth_episodes, args.n_bootstrap, args.fqe_steps = 15_000, 10_000, 200, 100

    import torch

    torch.set_num_threads(1)
    world = UserWorld(WorldConfig(n_items=args.n_items, n_categories=args.n_categories))
    start = time.perf_counter()
    log = log_complete_sessions(world, steps=args.steps, seed=args.seed, num_envs=args.num_envs)
    log_s = time.perf_counter() - start

    names = [f"epsilon-greedy({eps:g})" for eps in CANDIDATE_EPSILONS]
    truth = {}
    for k, (name, eps) in enumerate(zip(names, (*CANDIDATE_EPSILONS,), strict=True)):
        truth[name] = rollout_value(
            world, item_probabilities(world, eps), horizon=args.horizon, gamma=args.gamma,
            episodes=args.truth_episodes, seed=args.seed + 1000 * (k + 1), num_envs=1000,
        )  # fmt: skip
    logger_truth = rollout_value(
        world, item_probabilities(world, LOGGER_EPSILON), horizon=args.horizon, gamma=args.gamma,
        episodes=args.truth_episodes, seed=args.seed + 999, num_envs=1000,
    )  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log_path = tmp / "world.parquet"
        log.to_parquet(log_path)
        n_rows = len(log.frame)
        policies = []
        for name, eps in zip(names, CANDIDATE_EPSILONS, strict=True):
            path = tmp / f"{name}.npy"
            np.save(
                path,
                np.ascontiguousarray(
                    np.broadcast_to(item_probabilities(world, eps), (n_rows, world.n_items))
                ),
            )
            policies.append(str(path))
        start = time.perf_counter()
        report, _ = build_ope_report(
            OPEReportOptions(
                logs=log_path, policy=policies, out=tmp / "report", max_rounds=n_rows, n_bootstrap=args.n_bootstrap,
                horizon=args.horizon, gamma=args.gamma, fqe_steps=args.fqe_steps, seed=args.seed,
            )
        )  # fmt: skip
        report_s = time.perf_counter() - start
        if args.out is not None:
            report.save(args.out)

    ranking = report.ranking
    order = [c.name for c in ranking.candidates]
    true_order = sorted(names, key=lambda n: -truth[n][0])
    deployed_truth = truth[ranking.recommended][0] if ranking.recommended else None
    result = {
        "benchmark": "ope_ranking",
        "steps": n_rows,
        "sessions": report.reports[0].sequential.n_episodes,
        "n_items": args.n_items,
        "horizon": args.horizon,
        "gamma": args.gamma,
        "logger": f"epsilon-greedy({LOGGER_EPSILON:g}) over popularity",
        "logger_truth": {"value": logger_truth[0], "se": logger_truth[1]},
        "logged_value": ranking.logged.value,
        "ranking_estimator": ranking.estimator,
        "candidates": {
            c.name: {
                "truth": truth[c.name][0],
                "truth_se": truth[c.name][1],
                "value": c.estimate.value,
                "lower": c.estimate.lower,
                "upper": c.estimate.upper,
                "trusted": c.eligible,
                **{
                    e.name: e.value
                    for r in report.reports
                    if r.policy_name == c.name
                    for e in r.sequential.estimates
                },
            }
            for c in ranking.candidates
        },
        "report_order": order,
        "true_order": true_order,
        "order_matches": order == true_order,
        "recommended": ranking.recommended,
        "recommendation_beats_logger_in_truth": None
        if deployed_truth is None
        else deployed_truth > logger_truth[0],
        "logging_s": round(log_s, 1),
        "report_s": round(report_s, 1),
    }
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
