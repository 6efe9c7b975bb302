"""Where a large-catalogue vector env spends its time: the warm-start cost of a reset against the step.

The native vector env (N = 1024, random valid actions, NEXT_STEP autoreset) resets every user whose
episode ended, and a reset draws the user's warm-start history. With the exact `"rejection"` sampler
(docs/catalogue.md) a history costs a fixed number of proposals, each one random row of the catalogue:
in a catalogue far larger than the caches, each proposal waits for memory. This benchmark measures, in
one process per catalogue size (fresh caches, one thread):

- `reset_us_per_user`: `UserWorld.initial_state` per user, with users and uniforms never reused (so
  the catalogue rows are not warm in the cache), best of `--repeats`;
- `proposals_per_user` and `acceptance` of the sampler;
- `episode_steps`: mean episode length of the vector env (steps per reset);
- `vector_user_steps_per_s`: the vector env's measured rate with `concurrent_starts=False` (resets on
  the stepping thread), and `step_us_per_user` = its time per
  user-step minus the warm-start share (`reset_us_per_user / episode_steps`): the step itself plus a
  reset's bookkeeping and random draws, which do not depend on the catalogue;
- `ceiling_user_steps_per_s`: the rate if the step cost stayed as measured and only the warm start
  went: what removing every catalogue-dependent cost could give at most;
- `vector_default_user_steps_per_s`: the rate of the default vector env, which starts reset users on
  a second thread where that pays (`concurrent_starts`), so that the warm start overlaps the step.

The 500-item default world (inverse-CDF `"table"` sampler) is the baseline row of the same run.
`--groups G1:B1,G2:B2` adds, for the largest size, the acceptance a finer proposal would have
(`MAX_GROUPS` G, `UTILITY_BINS` B, set in that child only; a finer proposal draws other histories).
Prints one JSON line.

    python benchmarks/warm_start_cost.py [--quick] [--sizes 5000,1000000] [--repeats 3] [--groups 1280:4,1280:8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

NUM_ENVS = 1024
RESET_USERS = 51
"""Users per `initial_state` call in the reset measurement (about the vector env's resets per step)."""


def measure(n_items: int, seconds: float, repeats: int) -> dict:
    import gymnasium as gym
    import numpy as np

    import recsim_env  # noqa: F401  (registers SeqRec-v0)
    from recsim_env.world import UserWorld, WorldConfig

    config = WorldConfig(n_items=n_items)
    world = UserWorld(config)
    rng = np.random.default_rng(1)
    calls = 200
    users = rng.integers(0, config.n_users, (calls, RESET_USERS))
    uniforms = rng.random((calls, RESET_USERS, world.n_start_uniforms))
    world.initial_state(users[0], uniforms[0])  # compile / load the kernel
    best = float("inf")
    for _ in range(repeats):
        world.warm_start_proposals = world.warm_start_accepted = 0
        start = time.perf_counter()
        for c in range(calls):
            world.initial_state(users[c], uniforms[c])
        best = min(best, (time.perf_counter() - start) / (calls * RESET_USERS))
    proposals = world.warm_start_proposals / (calls * RESET_USERS) if world._proposal is not None else 0.0
    acceptance = world.warm_start_accepted / world.warm_start_proposals if proposals else None

    def vector_rate(concurrent_starts: bool | None) -> tuple[float, int, int]:
        env = gym.make_vec(
            "SeqRec-v0",
            num_envs=NUM_ENVS,
            world_config={"n_items": n_items},
            concurrent_starts=concurrent_starts,
        )
        actions = np.random.default_rng(0).integers(0, n_items, size=(64, NUM_ENVS))
        env.reset(seed=0)
        for t in range(20):
            env.step(actions[t % 64])
        rates, episodes, steps_done = [], 0, 0
        for _ in range(repeats):
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                _, _, terminated, truncated, _ = env.step(actions[steps % 64])
                episodes += int((terminated | truncated).sum())
                steps += 1
            rates.append(steps * NUM_ENVS / (time.perf_counter() - start))
            steps_done += steps
        env.close()
        return max(rates), episodes, steps_done

    # The decomposition below is of the serial env; the default env may start users concurrently.
    rate, episodes, steps_done = vector_rate(False)
    concurrent_rate, _, _ = vector_rate(None)
    episode_steps = steps_done * NUM_ENVS / max(episodes, 1)
    reset_share_us = best * 1e6 / episode_steps
    step_us = 1e6 / rate - reset_share_us
    return {
        "n_items": n_items,
        "sampler": world.warm_start_sampler,
        "reset_us_per_user": round(best * 1e6, 2),
        "proposals_per_user": round(proposals, 1),
        "acceptance": None if acceptance is None else round(acceptance, 3),
        "episode_steps": round(episode_steps, 2),
        "vector_user_steps_per_s": round(rate),
        "vector_default_user_steps_per_s": round(concurrent_rate),
        "step_us_per_user": round(step_us, 3),
        "reset_us_per_user_step": round(reset_share_us, 3),
        "ceiling_user_steps_per_s": round(1e6 / step_us) if step_us > 0 else None,
    }


def acceptance(n_items: int, max_groups: int, utility_bins: int) -> dict:
    """Proposals per user and acceptance of the `"rejection"` sampler with other proposal constants."""
    import numpy as np

    import recsim_env.world.warm_start as warm_start
    from recsim_env.world import UserWorld, WorldConfig

    warm_start.MAX_GROUPS, warm_start.UTILITY_BINS = max_groups, utility_bins
    config = WorldConfig(n_items=n_items, warm_start_sampler="rejection")
    world = UserWorld(config)
    rng = np.random.default_rng(1)
    users = rng.integers(0, config.n_users, 3000)
    world.initial_state(users, rng.random((3000, world.n_start_uniforms)))
    return {
        "n_items": n_items,
        "max_groups": max_groups,
        "utility_bins": utility_bins,
        "proposals_per_user": round(world.warm_start_proposals / 3000, 1),
        "acceptance": round(world.warm_start_accepted / world.warm_start_proposals, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 s per rate and 2 repeats")
    parser.add_argument("--sizes", default="500,5000,100000,1000000", help="comma-separated catalogue sizes")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per measurement (best kept)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per vector-env rate")
    parser.add_argument(
        "--groups", default="", help="G:B pairs of proposal constants to compare (acceptance)"
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-groups", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_groups is not None:
        groups, bins = (int(v) for v in args.child_groups.split(":"))
        print(json.dumps(acceptance(args.child, groups, bins)))
        return
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    repeats = args.repeats or (2 if args.quick else 3)
    if args.child is not None:
        print(json.dumps(measure(args.child, seconds, repeats)))
        return
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(size), "--seconds", str(seconds), "--repeats", str(repeats)],
            check=True, capture_output=True, text=True, env=env,
        )  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    finer = []
    for pair in filter(None, args.groups.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(max(int(s) for s in args.sizes.split(","))), "--child-groups", pair],
            check=True, capture_output=True, text=True, env=env,
        )  # fmt: skip
        finer.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(finer[-1]), file=sys.stderr)
    print(json.dumps({
        "benchmark": "warm_start_cost",
        "num_envs": NUM_ENVS,
        "rows": rows,
        "finer_proposals": finer,
        "load_average": os.getloadavg()[0],
        "machine": platform.machine(),
        "python": platform.python_version(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
