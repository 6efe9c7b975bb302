"""Fidelity of a simulator learned from world logs: click AUC / ECE against the world's truth, and
whether the ranking of uniform, popularity and greedy policies is the same in the simulator as in
the world. Prints one JSON line.

    python benchmarks/simulator_fidelity.py [--quick] [--steps 200000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 logged steps, 3 epochs, 200 episodes")
    parser.add_argument(
        "--steps", type=int, default=None, help="logged world steps to train on (default 200,000)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="most training epochs (default 20)")
    parser.add_argument(
        "--episodes", type=int, default=None, help="rollout episodes per policy (default 1000)"
    )
    parser.add_argument("--out", default=None, help="also save the simulator and its report here")
    parser.add_argument(
        "--simulator", default=None, help="evaluate this saved simulator instead of training one"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 suits a shared CPU; 0 = torch's default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    steps = args.steps or (20_000 if args.quick else 200_000)
    epochs = args.epochs or (3 if args.quick else 20)
    episodes = args.episodes or (200 if args.quick else 1000)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from recsim_env.policies import GreedyPolicy, LoggedItemStats, PopularityPolicy, UniformPolicy
    from recsim_env.rollout import rollout
    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit, load, save, write_report
    from simulators.report import world_metrics

    logs = log_world("uniform", steps=steps, seed=args.seed, progress=False)
    if args.simulator:
        result, simulator = None, load(args.simulator, data=logs)
    else:
        result = fit(
            logs,
            SimulatorConfig(epochs=epochs, seed=args.seed),
            progress=True,
            num_threads=args.threads or None,
        )
        simulator = result.simulator
        if args.out:
            save(simulator, args.out)
    started = time.perf_counter()
    world = world_metrics(simulator, steps=50_000, seed=args.seed + 1)
    world.pop("_samples")
    stats = LoggedItemStats.from_logs(logs)
    policies = [UniformPolicy(500), PopularityPolicy(stats), GreedyPolicy(stats)]
    ranking = {}
    for where, kwargs in (("world", {}), ("simulator", {"user_model": simulator})):
        ranking[where] = {
            p.name: round(
                rollout(p, n_episodes=episodes, seed=args.seed + 2, num_envs=256, **kwargs).mean_return, 3
            )
            for p in policies
        }
    order = {where: sorted(r, key=r.get, reverse=True) for where, r in ranking.items()}
    if args.out and result is not None:
        write_report(result, args.out, world="default", seed=args.seed)
    print(
        json.dumps(
            {
                "benchmark": "simulator_fidelity",
                "logged_steps": steps,
                "train_seconds": round(result.seconds, 1) if result else None,
                "epochs_run": len(result.history) if result else None,
                "click_auc_learned": round(world["learned"]["auc"], 4),
                "click_auc_world_truth": round(world["world_truth"]["auc"], 4),
                "click_auc_gap": round(world["auc_gap"], 4),
                "click_ece_learned": round(world["learned"]["ece"], 4),
                "click_ece_against_true_p": round(world["ece_against_true_probability"], 4),
                "click_rmse_to_true_p": round(world["rmse_to_true_probability"], 4),
                "mean_return": ranking,
                "ranking": order,
                "ranking_preserved": order["world"] == order["simulator"],
                "eval_seconds": round(time.perf_counter() - started, 1),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
