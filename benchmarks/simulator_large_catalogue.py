"""A learned simulator trained on a 100,000-item world log, then `check_env` on its environment (issue 24).

A `WorldConfig(n_items=--n-items)` world is logged by the `softmax` logger over its popularity (`--steps`
user-steps). `simulators.fit` trains a response model on it: its heads score one candidate per training
target (the exposed item, or a sampled negative for positive-only data), so no `[batch, n_items]` array is
built; the catalogue costs its per-item tables (embeddings, click biases, the interest filter's offsets),
whose dense Adam updates are O(n_items D) per step. The simulator's `SeqRec-v0` then passes gymnasium's
`check_env` and runs `--rollout-steps` random-action steps of a `--num-envs` vector env (a step scores only
the slate's items).

Prints one JSON line (seconds, peak resident memory of this process, steps/s).

    python benchmarks/simulator_large_catalogue.py [--quick] [--n-items 100000] [--steps 20000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import numpy as np


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 items, 2,000 steps, 1 epoch")
    parser.add_argument("--n-items", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=20_000, help="logged user-steps (rows of the log)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--rollout-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.n_items, args.steps, args.epochs, args.rollout_steps = 20_000, 2_000, 1, 10

    import gymnasium as gym
    import torch
    from gymnasium.utils.env_checker import check_env

    import recsim_env  # noqa: F401  (registers SeqRec-v0)
    import simulators
    from recsim_env.envs.seqrec import SeqRecVectorEnv
    from recsim_env.world import WorldConfig
    from recsim_env.world.logging import log_world

    torch.set_num_threads(1)
    started = time.perf_counter()
    log = log_world(
        "softmax",
        steps=args.steps,
        seed=args.seed,
        world_config=WorldConfig(n_items=args.n_items),
        num_envs=64,
        progress=sys.stderr.isatty(),
    )
    log_s = time.perf_counter() - started
    rss_after_log = _peak_rss_gib()

    config = simulators.SimulatorConfig(epochs=args.epochs, patience=args.epochs, seed=args.seed)
    started = time.perf_counter()
    result = simulators.fit(log, config, progress=sys.stderr.isatty(), num_threads=1)
    fit_s = time.perf_counter() - started
    sim = result.simulator
    model = sim.members[0]
    n_params = sum(p.numel() for p in model.parameters())
    per_item = sum(p.numel() for p in model.parameters() if p.shape and p.shape[0] == sim.n_items + 1)
    epoch_s = [h["seconds"] for h in result.history]

    started = time.perf_counter()
    env = gym.make("SeqRec-v0", simulator=sim, max_steps=20)
    check_env(env.unwrapped, skip_render_check=True)
    check_s = time.perf_counter() - started

    vec = SeqRecVectorEnv(num_envs=args.num_envs, user_model=sim, history_len=sim.history_len)
    vec.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for _ in range(args.rollout_steps):
        vec.step(rng.integers(0, sim.n_items, size=args.num_envs))
    rollout_s = time.perf_counter() - started
    shown = len(np.unique(log.frame["item_id"].to_numpy()))
    print(
        json.dumps(
            {
                "benchmark": "simulator_large_catalogue",
                "quick": args.quick,
                "n_items": args.n_items,
                "items_shown_in_log": shown,
                "log_rows": len(log.frame),
                "epochs_run": len(epoch_s),
                "log_seconds": round(log_s, 1),
                "fit_seconds": round(fit_s, 1),
                "epoch_seconds": [round(s, 1) for s in epoch_s],
                "valid_loss": [round(h["valid_loss"], 4) for h in result.history],
                "parameters": n_params,
                "per_item_table_parameters": per_item,
                "check_env": "passed",
                "check_env_seconds": round(check_s, 1),
                "rollout_user_steps_per_s": round(args.num_envs * args.rollout_steps / rollout_s, 1),
                "peak_rss_gib_after_log": round(rss_after_log, 3),
                "peak_rss_gib": round(_peak_rss_gib(), 3),
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
    )


if __name__ == "__main__":
    main()
