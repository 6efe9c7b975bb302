"""Retrieve-then-rank on a 100,000-item world: train under a time budget, compare with popularity and
uniform on the same users, and record what a step of the agent costs.

1. Trains `agents.retrieval` (warm-up of `--warmup-users` episode starts, co-consumption SVD, clusters,
   then `--algorithm` PPO or DQN on the ranker, with the `--query` heuristic or learned, in a world
   of `--slate-size` K) with `time_budget_s = --budget` seconds counted from the start of training
   (warm-up included); `--quick`: 120 s and a smaller warm-up.
2. Rolls out, on the same seeds (`--seed`, `--episodes` episodes, the same users in the same order):
   the trained agent (its most probable candidate, as `seqrec evaluate` acts for a saved policy),
   uniform, popularity fitted on `--log-steps` uniform-logging world steps (what `seqrec evaluate
   --policy popularity` fits), and popularity fitted on the warm-up's consumption counts (the same
   logs the agent learned from: a stronger popularity), and the retrieval order (the agent's
   candidates by retrieval score, its ranker ignored; for K > 1 its K best).
3. Times the agent's action for a batch of B observations: retrieval (query, exact per-cluster MIPS
   over the catalogue, features) and ranking (the ranker's forward pass), in ms per batch.

Prints one JSON line: mean return with its 95% CI per policy, the ratio to each popularity, training
steps and steps/s, the action cost, peak resident memory and the machine.

    python benchmarks/retrieval_agent.py [--quick] [--n-items 100000] [--budget 870] [--episodes 200]
        [--algorithm ppo|dqn] [--query heuristic|learned] [--slate-size 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np
import torch

EVAL_SEED_OFFSET = 10_000_000
"""Evaluation episodes are seeded from here on, apart from the warm-up's and training's seeds."""


def action_cost_ms(policy, env_kwargs: dict, batch: int, repeats: int, seed: int) -> dict:
    """Median ms per batch of `batch` observations: retrieval (with the policy's query) + features,
    then the ranker's scores."""
    from recsim_env.envs import SeqRecVectorEnv

    env = SeqRecVectorEnv(num_envs=batch, **env_kwargs)
    obs, _ = env.reset(seed=seed)
    retrieval, ranking = [], []
    query = policy.scorer.query if policy.scorer.learned_query else None
    for _ in range(repeats):
        start = time.perf_counter()
        ids, ranker_obs = policy.generator(obs, query)
        middle = time.perf_counter()
        policy.scorer.scores(ranker_obs).argmax(axis=1)
        end = time.perf_counter()
        retrieval.append(middle - start)
        ranking.append(end - middle)
    env.close()
    return {
        "batch": batch,
        "retrieval_ms": round(1e3 * float(np.median(retrieval)), 3),
        "ranking_ms": round(1e3 * float(np.median(ranking)), 3),
    }


class RetrievalOrder:
    """The trained agent's heuristic-query candidates taken in retrieval-score order, its ranker (and a
    learned query) ignored: what RL adds over the order it starts from (its scores start at a multiple
    of the retrieval score)."""

    name = "retrieval-order"

    def __init__(self, policy) -> None:
        self.policy = policy
        self.n_items, self.slate_size = policy.n_items, policy.slate_size

    def seed(self, seed: int | None) -> None:
        """Nothing to reset: the order is deterministic."""

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        """[N, K] the best-scored candidates of each batched observation."""
        from agents.retrieval.candidates import CANDIDATE_STATS, fill_slates

        del deterministic  # the order is deterministic
        ids, features = self.policy.generator(obs)
        score = features["candidates"][..., self.policy.generator.dim + CANDIDATE_STATS.index("score")]
        return fill_slates(ids, score.argmax(axis=1), score, self.policy.slate_size)

    def action_distribution(self, obs) -> np.ndarray:
        """[N, n_items] one-hot on the item `act` shows."""
        from recsim_env.policies import one_hot

        return one_hot(self.act(obs)[:, 0], self.n_items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="120 s of training, 50,000 warm-up users")
    parser.add_argument("--n-items", type=int, default=100_000)
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="training seconds [870: the 15-minute bar less one PPO update, since the budget is checked between updates; quick: 120]",
    )
    parser.add_argument("--warmup-users", type=int, default=None, help="[200,000; quick: 50,000]")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--log-steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--algorithm", default="ppo", choices=("ppo", "dqn"), help="the ranker's RL algorithm"
    )
    parser.add_argument("--query", default="heuristic", choices=("heuristic", "learned"))
    parser.add_argument("--slate-size", type=int, default=1, help="K, items per step")
    parser.add_argument("--device", default="cpu", help="the ranker's device: cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", default=None, help="also save the trained policy in this directory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from agents.baselines import fit_baseline
    from agents.retrieval import RetrievalConfig, train
    from recsim_env.policies import LoggedItemStats, PopularityPolicy, UniformPolicy
    from recsim_env.rollout import rollout
    from recsim_env.world import WorldConfig
    from recsim_env.world.logging import log_world

    budget = args.budget if args.budget is not None else (120.0 if args.quick else 870.0)
    warmup = args.warmup_users if args.warmup_users is not None else (50_000 if args.quick else 200_000)
    env_kwargs = {"world_config": {"n_items": args.n_items}}
    if args.slate_size != 1:
        env_kwargs["slate_size"] = args.slate_size
    config = RetrievalConfig(
        algorithm=args.algorithm,
        query=args.query,
        env_config=env_kwargs,
        warmup_users=warmup,
        total_steps=10**9,
        time_budget_s=budget,
        seed=args.seed,
        device=args.device,
    )
    started = time.perf_counter()
    policy, info = train(config, progress=False)
    train_wall = time.perf_counter() - started
    if args.save:
        policy.save(args.save)

    n_items = args.n_items
    counts = policy.generator.counts
    uniform_logs = log_world(
        "uniform",
        steps=args.log_steps,
        seed=args.seed,
        world_config=WorldConfig(n_items=n_items),
        progress=False,
    )
    policies = {
        "retrieval": (policy, True),
        "uniform": (UniformPolicy(n_items, args.slate_size, seed=args.seed), False),
        "popularity": (
            fit_baseline("popularity", uniform_logs, slate_size=args.slate_size, seed=args.seed),
            False,
        ),
        "retrieval_order": (RetrievalOrder(policy), True),
        "popularity_warmup": (
            PopularityPolicy(
                LoggedItemStats(counts, counts, None, None, None), args.slate_size, seed=args.seed
            ),
            False,
        ),
    }
    # Evaluation users: env seeds far from the warm-up's (seed .. seed + warmup_users) and PPO's.
    eval_seed = EVAL_SEED_OFFSET + args.seed
    returns = {}
    for name, (agent, deterministic) in policies.items():
        t = time.perf_counter()
        stats = rollout(
            agent, n_episodes=args.episodes, seed=eval_seed, deterministic=deterministic, **env_kwargs
        )
        returns[name] = {
            "mean_return": round(stats.mean_return, 3),
            "ci95": [round(x, 3) for x in stats.return_ci95],
            "click_rate": round(stats.click_rate, 4),
            "session_length": round(stats.session_length, 2),
            "seconds": round(time.perf_counter() - t, 1),
        }
    cost = [action_cost_ms(policy, env_kwargs, batch, 20, args.seed) for batch in (1, 64)]
    print(
        json.dumps(
            {
                "benchmark": "retrieval_agent",
                "quick": args.quick,
                "algorithm": args.algorithm,
                "query": args.query,
                "slate_size": args.slate_size,
                "n_items": n_items,
                "n_candidates": info["n_candidates"],
                "indexed_items": info["indexed_items"],
                "episodes": args.episodes,
                "eval_seed": eval_seed,
                "budget_s": budget,
                "train_wall_s": round(train_wall, 1),
                "warmup_s": round(info["warmup_s"], 1),
                "embedding_s": round(info["embedding_s"], 1),
                "rl_steps": info["rl_steps"],
                "rl_steps_per_s": round(info["rl_steps_per_s"], 1),
                "returns": returns,
                "ratio_to_popularity": round(
                    returns["retrieval"]["mean_return"] / returns["popularity"]["mean_return"], 3
                ),
                "ratio_to_popularity_warmup": round(
                    returns["retrieval"]["mean_return"] / returns["popularity_warmup"]["mean_return"], 3
                ),
                "action_cost": cost,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
                "torch_threads": args.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
