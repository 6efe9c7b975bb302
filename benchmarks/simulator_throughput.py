"""Step throughput of `SeqRec-v0` on a learned transformer simulator (the default config: SASRec backbone,
D = 32, L = 20, an interest filter): user-steps/s of the native vector env at N = 256 (one encoder call
and one filter update per step on [256, L]).
Prints one JSON line.

    python benchmarks/simulator_throughput.py [--quick] [--simulator DIR] [--seconds S]

Without `--simulator` it first trains a simulator on 20,000 logged world steps (one epoch: the
weights' values do not change the cost of a step).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def user_steps_per_second(simulator, num_envs: int, seconds: float, threads: int | None) -> float:
    import torch

    from recsim_env.envs.seqrec import SeqRecVectorEnv

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        env = SeqRecVectorEnv(num_envs=num_envs, user_model=simulator, history_len=simulator.history_len)
        actions = np.random.default_rng(0).integers(0, simulator.n_items, size=(64, num_envs))
        env.reset(seed=0)
        for t in range(10):  # warm-up
            env.step(actions[t % 64])
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            env.step(actions[steps % 64])
            steps += 1
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s per measurement instead of 10 s")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--simulator", default=None, help="a saved simulator's directory")
    parser.add_argument("--num-envs", type=int, default=256)
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)

    import torch

    import simulators

    if args.simulator:
        simulator = simulators.load(args.simulator)
    else:
        from recsim_env.world.logging import log_world

        logs = log_world("uniform", steps=20_000, seed=0, progress=False)
        simulator = simulators.fit(logs, simulators.SimulatorConfig(epochs=1)).simulator
    default_threads = torch.get_num_threads()
    result = {
        "benchmark": "simulator_throughput",
        "simulator": repr(simulator),
        "num_envs": args.num_envs,
        "seconds_per_measurement": seconds,
        "user_steps_per_s": round(user_steps_per_second(simulator, args.num_envs, seconds, None)),
        "torch_threads": default_threads,
        "user_steps_per_s_1_thread": round(user_steps_per_second(simulator, args.num_envs, seconds, 1)),
        "load_average_1min": round(__import__("os").getloadavg()[0], 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
