"""RLlib PPO with the transformer (SASRec) RLModule on the world-backed `SeqRec-v0` versus the uniform policy.

Trains for a wall-clock budget (default 10 minutes) through the same code as `seqrec train --backend
rllib`, then rolls out the trained policy and the uniform policy in the world on the same seeds.
Acceptance: trained mean return >= 1.2 x uniform, checked for the policy as sampled (`passed_stochastic`)
and for its most probable item (`passed_deterministic`, what the periodic evaluation reports). Prints
one JSON line.

    python benchmarks/rllib_ppo.py [--quick] [--time-budget S] [--num-env-runners N] [--num-envs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 60 s budget and 200 evaluation episodes")
    parser.add_argument("--time-budget", type=float, default=600.0, help="training seconds")
    parser.add_argument("--num-env-runners", type=int, default=1)
    parser.add_argument("--num-envs", type=int, default=32, help="users per env runner (native vector env)")
    parser.add_argument("--episodes", type=int, default=1000, help="evaluation episodes per policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="keep the run here (default: a temporary directory)")
    args = parser.parse_args()
    budget = 60.0 if args.quick else args.time_budget
    episodes = 200 if args.quick else args.episodes

    import ray
    import torch

    from agents.rllib.policy import RLModulePolicy
    from agents.training import TrainConfig, train
    from recsim_env.policies import UniformPolicy
    from recsim_env.rollout import rollout

    config = TrainConfig(
        backend="rllib",
        algo="ppo",
        encoder="sasrec",
        encoder_config={"d_model": 32, "n_layers": 1, "dropout": 0.0},
        num_envs=args.num_envs,
        num_env_runners=args.num_env_runners,
        stop_timesteps=10**9,
        time_budget_s=budget,
        eval_interval=10**9,
        eval_episodes=50,
        seed=args.seed,
    )
    out = args.out or tempfile.mkdtemp(prefix="rllib_ppo_")
    start = time.perf_counter()
    result = train(config, out, progress=False)
    wall = time.perf_counter() - start
    ray.shutdown()
    trained = RLModulePolicy.load(out)
    stochastic = rollout(trained, n_episodes=episodes, seed=args.seed + 1)
    greedy = rollout(trained, n_episodes=episodes, seed=args.seed + 1, deterministic=True)
    uniform = rollout(UniformPolicy(trained.n_items), n_episodes=episodes, seed=args.seed + 1)
    record = {
        "benchmark": "rllib_ppo",
        "time_budget_s": budget,
        "train_wall_s": round(wall, 1),
        "timesteps": result.timesteps,
        "env_steps_per_s": round(result.timesteps / result.elapsed_s, 1),
        "num_env_runners": args.num_env_runners,
        "num_envs_per_env_runner": args.num_envs,
        "episodes": episodes,
        "ppo_mean_return": round(stochastic.mean_return, 3),
        "ppo_return_ci95": [round(x, 3) for x in stochastic.return_ci95],
        "ppo_deterministic_mean_return": round(greedy.mean_return, 3),
        "uniform_mean_return": round(uniform.mean_return, 3),
        "uniform_return_ci95": [round(x, 3) for x in uniform.return_ci95],
        "ratio_to_uniform": round(stochastic.mean_return / uniform.mean_return, 3),
        "deterministic_ratio_to_uniform": round(greedy.mean_return / uniform.mean_return, 3),
        "passed_stochastic": bool(stochastic.mean_return >= 1.2 * uniform.mean_return),
        "passed_deterministic": bool(greedy.mean_return >= 1.2 * uniform.mean_return),
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "ray": ray.__version__,
        "torch": torch.__version__,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
