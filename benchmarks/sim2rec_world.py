"""Sim2Rec from a learned simulator set to the ground-truth world (issue 7, the second table).

A simulator (3-member SASRec ensemble, d_model 32) is learned from `--log-steps` uniform-policy
steps of the default world (trained once, then cached); `SeqRecSimSet-v0` is built over it. Per variant (Sim2Rec,
DIRECT, UNIVERSAL, ORACLE; see `agents.sim2rec_seq`) and seed, PPO trains for `--timesteps` steps on
the variant's simulators, then the policy is rolled out zero-shot in the world (`SeqRec-v0`, default
arguments): mean return (clicks) per episode, click rate and session length, acting as trained
(sampled) and by its most probable item; and in held-out users of the set. ORACLE has no true hidden
parameters in the world and is given the set's centre there. The log baselines (uniform, popularity,
greedy, fitted on the same logs) give the scale. Prints one JSON line.

    python benchmarks/sim2rec_world.py [--quick] [--seeds 3] [--timesteps N] [--device auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time

import numpy as np
import torch

from agents.baselines import fit_baseline
from agents.sim2rec import Sim2RecConfig, simulator_set, train
from agents.sim2rec import evaluate_seqrec as evaluate
from recsim_env.rollout import rollout
from recsim_env.world.logging import log_world

VARIANTS = ("sim2rec", "direct", "universal", "oracle")
WORLD_SEED, SET_SEED = 10_000, 20_000
"""Evaluation seeds: world users and held-out set users differ from every training seed."""


def learned_simulator(logs, epochs: int) -> str:
    """Directory of the simulator learned from `logs` (cached by data and config fingerprint)."""
    from simulators import SimulatorConfig
    from simulators.env import cache_dir, fingerprint, trained_simulator

    config = SimulatorConfig(ensemble_size=3, d_model=32, epochs=epochs, seed=0)
    trained_simulator(logs, config, progress=False)
    return str(cache_dir() / f"{logs.name}-{fingerprint(logs, config)}")


def summary(stats) -> dict:
    return {
        "mean_return": stats.mean_return,
        "click_rate": stats.click_rate,
        "session_length": stats.session_length,
    }


def mean_std(rows: list[dict], key: str) -> dict:
    values = [row[key] for row in rows]
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 20k logged and 20k PPO steps")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=250_000, help="PPO env steps per run")
    parser.add_argument(
        "--log-steps", type=int, default=200_000, help="world steps the simulator learns from"
    )
    parser.add_argument("--sim-epochs", type=int, default=20, help="most simulator training epochs")
    parser.add_argument("--episodes", type=int, default=1000, help="evaluation episodes per policy and env")
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda or auto (CUDA + bf16 autocast when present)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = 1 if args.quick else args.seeds
    timesteps = 20_000 if args.quick else args.timesteps
    log_steps = 20_000 if args.quick else args.log_steps
    episodes = 200 if args.quick else args.episodes

    start = time.perf_counter()
    logs = log_world("uniform", steps=log_steps, seed=0, progress=False)
    simulator = learned_simulator(logs, 3 if args.quick else args.sim_epochs)
    simulator_seconds = time.perf_counter() - start
    # PPO settings for 500 items and short sessions: a light entropy bonus and a short horizon
    # (gamma = lambda = 0.9) let the item preferences sharpen within the budget.
    base = Sim2RecConfig(
        env="seqrec",
        simulator=simulator,
        total_timesteps=timesteps,
        num_envs=32,
        rollout_steps=32,
        learning_rate=3e-3,
        ent_coef=0.001,
        gamma=0.9,
        gae_lambda=0.9,
    )
    the_set = simulator_set(base)

    baselines = {}
    for name in ("uniform", "popularity", "greedy"):
        policy = fit_baseline(name, logs)
        baselines[name] = {
            "world": summary(rollout(policy, n_episodes=episodes, seed=WORLD_SEED)),
            "set": summary(rollout(policy, n_episodes=episodes, seed=SET_SEED, user_model=the_set)),
        }

    results = {}
    for variant in VARIANTS:
        runs = []
        for seed in range(seeds):
            config = dataclasses.replace(base, variant=variant, seed=seed, device=args.device)
            began = time.perf_counter()
            policy = train(config, progress=False)
            seconds = time.perf_counter() - began
            world = evaluate(policy, n_episodes=episodes, seed=WORLD_SEED)
            argmax = evaluate(policy, n_episodes=episodes, seed=WORLD_SEED, deterministic=True)
            in_set = evaluate(policy, n_episodes=episodes, seed=SET_SEED, user_model=the_set)
            runs.append(
                {
                    **{f"world_{k}": v for k, v in summary(world).items()},
                    "world_argmax_return": argmax.mean_return,
                    "set_return": in_set.mean_return,
                    "train_seconds": seconds,
                }
            )
            print(f"{variant} seed {seed}: {runs[-1]}", file=sys.stderr, flush=True)  # progress
        results[variant] = {key: mean_std(runs, key) for key in runs[0]}
    print(
        json.dumps(
            {
                "benchmark": "sim2rec_world",
                "seeds": seeds,
                "timesteps": timesteps,
                "log_steps": log_steps,
                "episodes": episodes,
                "simulator": simulator,
                "simulator_seconds": simulator_seconds,
                "baselines": baselines,
                "results": results,
                "device": args.device,
                "torch": torch.__version__,
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
