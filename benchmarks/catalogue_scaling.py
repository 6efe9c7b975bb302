"""Catalogue scaling: what each part of the stack costs as the world's catalogue grows, in one run.

For each catalogue size (10^3 .. 10^6 items by default) one child process measures, from a fresh
start: building the `UserWorld` (seconds, and peak memory above the child's start-up), a full reset
of the native vector env at N = 1024, its user-steps/s (random valid actions, resets included) and
the steps/s of one `SeqRec-v0` through `gym.make`. The default world (500 items) is measured in the
same run as the baseline, and `--table-up-to` adds rows for the catalogue-wide `"table"`
warm-start sampler so that the old cost is measured beside the new one.

Prints one JSON line; `--plot PATH` also draws the curves. Each measurement is one entry of
`MEASUREMENTS` (a function of the world config returning a dict of columns), so agent, simulator and
OPE columns are added there (a measurement that uses torch sets `torch.set_num_threads(1)` itself).

    python benchmarks/catalogue_scaling.py [--quick] [--sizes 1000,1000000] [--plot scaling.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

NUM_ENVS = 1024
DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
BASELINE_ITEMS = 500


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


# ---------------------------------------------------------------------------- measurements
def measure_world(world_config: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Build time and the peak memory the build adds (in a fresh process, so the peak is the build's)."""
    from recsim_env.world import UserWorld, WorldConfig

    config = WorldConfig(**world_config)
    before = _current_rss_mib()
    start = time.perf_counter()
    world = UserWorld(config)
    build_s = time.perf_counter() - start
    return {
        "build_s": round(build_s, 3),
        "build_peak_mib": round(_peak_rss_mib() - before, 1),
        "world_mib": round(_current_rss_mib() - before, 1),
        "warm_start_sampler": world.warm_start_sampler,
    }


def measure_vector_env(world_config: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Full reset time and user-steps/s of the native vector env at N = `NUM_ENVS`."""
    import gymnasium as gym

    env = gym.make_vec("SeqRec-v0", num_envs=NUM_ENVS, world_config=world_config)
    actions = np.random.default_rng(0).integers(0, world_config["n_items"], size=(64, NUM_ENVS))
    env.reset(seed=0)  # compiles the kernels
    start = time.perf_counter()
    env.reset(seed=1)
    reset_s = time.perf_counter() - start
    for t in range(20):
        env.step(actions[t % 64])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % 64])
        steps += 1
    rate = steps * NUM_ENVS / (time.perf_counter() - start)
    world = env.unwrapped.user_model if hasattr(env, "unwrapped") else env.user_model
    row = {
        f"vector_n{NUM_ENVS}_reset_s": round(reset_s, 4),
        f"vector_n{NUM_ENVS}_user_steps_per_s": round(rate),
    }
    if world.warm_start_proposals:  # the rejection sampler over every reset above
        row["warm_start_acceptance"] = round(world.warm_start_accepted / world.warm_start_proposals, 4)
        row["warm_start_fallbacks"] = world.warm_start_fallbacks
    return row


def measure_single_env(world_config: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Steps/s of one `SeqRec-v0` through `gym.make` (wrappers included, resets included)."""
    from env_throughput import single_env_steps_per_second  # this folder is on sys.path when run as a script

    return {"single_env_steps_per_s": round(single_env_steps_per_second(seconds, world_config=world_config))}


MEASUREMENTS: dict[str, Callable[[dict[str, Any], float], dict[str, Any]]] = {
    "world": measure_world,
    "vector_env": measure_vector_env,
    "single_env": measure_single_env,
}
"""Column groups, measured in this order in each child process."""


# ---------------------------------------------------------------------------- driver
def run_child(world_config: dict[str, Any], measurements: list[str], seconds: float) -> dict[str, Any]:
    """All `measurements` for one world config, in this process; one dict of columns."""
    row: dict[str, Any] = dict(world_config)
    for name in measurements:
        row.update(MEASUREMENTS[name](world_config, seconds))
    row["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    return row


def measure_in_child(world_config: dict[str, Any], measurements: list[str], seconds: float) -> dict[str, Any]:
    """`run_child` in a fresh interpreter (memory peaks and caches of one size never reach another)."""
    command = [
        sys.executable,
        __file__,
        "--child",
        json.dumps(world_config),
        "--measure",
        ",".join(measurements),
    ]
    command += ["--seconds", str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {
            **world_config,
            "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed",
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Log-log curves of each numeric column against `n_items`, one panel per column and sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [
        key
        for key in (
            "build_s",
            "build_peak_mib",
            f"vector_n{NUM_ENVS}_reset_s",
            f"vector_n{NUM_ENVS}_user_steps_per_s",
            "single_env_steps_per_s",
        )
        if any(key in row for row in rows)
    ]
    figure, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.4), squeeze=False)
    for axis, column in zip(axes[0], columns):
        for sampler in sorted({row.get("warm_start_sampler", "") for row in rows}):
            points = sorted(
                (row["n_items"], row[column])
                for row in rows
                if row.get("warm_start_sampler") == sampler and column in row
            )
            if points:
                axis.plot(*zip(*points), marker="o", label=sampler)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("n_items")
        axis.set_title(column, fontsize=9)
        axis.legend(fontsize=8)
    figure.tight_layout()
    tmp = f"{path}.tmp.png"
    figure.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 s per rate instead of 5 s")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per rate")
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="catalogue sizes, comma-separated"
    )
    parser.add_argument(
        "--table-up-to",
        type=int,
        default=10_000,
        help="also measure the 'table' sampler at sizes up to this (0: never)",
    )
    parser.add_argument(
        "--measure", default=",".join(MEASUREMENTS), help=f"column groups, of {list(MEASUREMENTS)}"
    )
    parser.add_argument("--plot", default=None, help="write a PNG of the curves here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    measurements = [name for name in args.measure.split(",") if name]
    unknown = sorted(set(measurements) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"--measure: unknown column group(s) {unknown}; the groups are {list(MEASUREMENTS)}")
    if args.child is not None:
        print(json.dumps(run_child(json.loads(args.child), measurements, seconds)))
        return
    sizes = [int(size) for size in args.sizes.split(",") if size]
    configs = [{"n_items": BASELINE_ITEMS}]
    configs += [{"n_items": n, "warm_start_sampler": "table"} for n in sizes if n <= args.table_up_to]
    configs += [{"n_items": n} for n in sizes]
    rows = []
    for config in configs:
        rows.append(measure_in_child(config, measurements, seconds))
        print(f"measured {config}: {rows[-1]}", file=sys.stderr, flush=True)
    if args.plot:
        plot(rows, args.plot)
    result = {
        "benchmark": "catalogue_scaling",
        "seconds_per_rate": seconds,
        "num_envs": NUM_ENVS,
        "rows": rows,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
