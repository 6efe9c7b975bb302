"""Environment throughput: steps/s of one `SeqRec-v0` through `gym.make` (wrappers included) and
user-steps/s of the native vector env at N = 1, 64, 1024. Prints one JSON line. `--n-items` runs
the same measurements on a larger world (benchmarks/catalogue_scaling.py compares sizes in one run).

    python benchmarks/env_throughput.py [--quick] [--seconds S] [--n-items N]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import gymnasium as gym
import numpy as np

import recsim_env  # noqa: F401  (registers SeqRec-v0)


def single_env_steps_per_second(
    seconds: float, slate_size: int = 1, n_items: int = 500, world_config: dict | None = None
) -> float:
    """Steps/s of one `SeqRec-v0` through `gym.make` (wrappers and resets included); `world_config`
    (a dict of `WorldConfig` fields, its `n_items` included) replaces `n_items` when given."""
    world_config = world_config if world_config is not None else {"n_items": n_items}
    n_items = int(world_config.get("n_items", 500))
    env = gym.make("SeqRec-v0", slate_size=slate_size, world_config=world_config)
    rng = np.random.default_rng(0)
    if slate_size == 1:
        actions = [int(a) for a in rng.integers(0, n_items, size=10_000)]
    else:
        draw = (  # the default world's actions as before; no permutation of a large catalogue
            (lambda: rng.permutation(n_items)[:slate_size])
            if n_items <= 500
            else (lambda: rng.choice(n_items, slate_size, replace=False))
        )
        actions = [draw() for _ in range(10_000)]
    env.reset(seed=0)
    for action in actions[:1000]:  # warm-up (numba compilation, caches)
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    return steps / (time.perf_counter() - start)


def vector_env_user_steps_per_second(num_envs: int, seconds: float, n_items: int = 500) -> float:
    env = gym.make_vec("SeqRec-v0", num_envs=num_envs, world_config={"n_items": n_items})
    actions = np.random.default_rng(0).integers(0, n_items, size=(64, num_envs))
    env.reset(seed=0)
    for t in range(20):
        env.step(actions[t % 64])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % 64])
        steps += 1
    return steps * num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 s per measurement instead of 5 s")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--n-items", type=int, default=500, help="catalogue size of the world (default 500)")
    args = parser.parse_args()
    n_items = args.n_items
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    result = {
        "benchmark": "env_throughput",
        "seconds_per_measurement": seconds,
        "n_items": n_items,
        "single_env_steps_per_s": round(single_env_steps_per_second(seconds, n_items=n_items)),
        "single_env_slate5_steps_per_s": round(single_env_steps_per_second(seconds, 5, n_items)),
        **{
            f"vector_env_n{n}_user_steps_per_s": round(vector_env_user_steps_per_second(n, seconds, n_items))
            for n in (1, 64, 1024)
        },
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
