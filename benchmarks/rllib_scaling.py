"""RLlib sampling speed-up from 1 to 2 env runners: env-steps/s of PPO on `SeqRec-v0` (SASRec RLModule).

For each runner count, builds the same PPO algorithm as `seqrec train --backend rllib` (each runner
steps `--num-envs` users in the native vector env), runs one warm-up iteration, then `--iterations`
timed ones. Reports env steps per second of sampling (RLlib's `env_runner_sampling_timer`) and of
whole iterations (sampling + learning). Prints one JSON line.

    python benchmarks/rllib_scaling.py [--quick] [--iterations N] [--num-envs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def measure(num_env_runners: int, *, num_envs: int, iterations: int, batch: int) -> dict[str, float]:
    import ray

    from agents.rllib.train import build_algorithm_config, init_ray
    from agents.training import TrainConfig

    config = TrainConfig(
        backend="rllib",
        algo="ppo",
        encoder_config={"d_model": 32, "n_layers": 1},
        num_envs=num_envs,
        num_env_runners=num_env_runners,
        algo_config={"train_batch_size_per_learner": batch, "minibatch_size": batch, "num_epochs": 1},
    )
    init_ray(config)
    algorithm = build_algorithm_config(config).build_algo()
    try:
        algorithm.train()  # warm-up: workers start, first episodes
        steps = sampling = 0.0
        start = time.perf_counter()
        for _ in range(iterations):
            result = algorithm.train()
            steps += result["env_runners"]["num_env_steps_sampled"]
            sampling += result["timers"]["env_runner_sampling_timer"]
        wall = time.perf_counter() - start
    finally:
        algorithm.stop()
        ray.shutdown()
    return {"sampling_env_steps_per_s": steps / sampling, "iteration_env_steps_per_s": steps / wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 timed iterations of 1024 steps")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--num-envs", type=int, default=32, help="users per env runner")
    args = parser.parse_args()
    iterations, batch = (2, 1024) if args.quick else (args.iterations, 4096)
    one = measure(1, num_envs=args.num_envs, iterations=iterations, batch=batch)
    two = measure(2, num_envs=args.num_envs, iterations=iterations, batch=batch)
    import ray
    import torch

    record = {
        "benchmark": "rllib_scaling",
        "iterations": iterations,
        "train_batch": batch,
        "num_envs_per_env_runner": args.num_envs,
        "runners_1_sampling_env_steps_per_s": round(one["sampling_env_steps_per_s"], 1),
        "runners_2_sampling_env_steps_per_s": round(two["sampling_env_steps_per_s"], 1),
        "sampling_speedup": round(two["sampling_env_steps_per_s"] / one["sampling_env_steps_per_s"], 2),
        "runners_1_iteration_env_steps_per_s": round(one["iteration_env_steps_per_s"], 1),
        "runners_2_iteration_env_steps_per_s": round(two["iteration_env_steps_per_s"], 1),
        "iteration_speedup": round(two["iteration_env_steps_per_s"] / one["iteration_env_steps_per_s"], 2),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "ray": ray.__version__,
        "torch": torch.__version__,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
