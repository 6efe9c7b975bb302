"""SB3 PPO on `SeqRec-v0` with the untied action head (one output row per item) against the head tied to the
encoder's item embeddings (`agents.heads.TiedItemHead`), at the same number of environment steps and seed.
Each policy is evaluated on its most probable item in the world. Prints one JSON line.

    python benchmarks/sb3_action_heads.py [--quick] [--steps 40960] [--episodes 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,096 steps and 100 episodes")
    parser.add_argument("--steps", type=int, default=40_960)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    steps, episodes = (4_096, 100) if args.quick else (args.steps, args.episodes)

    import torch

    from agents import load_policy
    from agents.training import TrainConfig, train
    from recsim_env.rollout import rollout

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for head in ("mlp", "tied"):
            config = TrainConfig(action_head=head, stop_timesteps=steps, seed=args.seed, eval_interval=10**9)
            started = time.perf_counter()
            train(config, Path(tmp) / head, progress=False)
            train_s = time.perf_counter() - started
            torch.set_num_threads(1)
            stats = rollout(
                load_policy(Path(tmp) / head), n_episodes=episodes, seed=args.seed, deterministic=True
            )
            rows[head] = {"return": round(stats.mean_return, 3), "ci95": [round(x, 3) for x in stats.return_ci95],
                          "click_rate": round(stats.click_rate, 4), "train_s": round(train_s, 1)}  # fmt: skip
    print(json.dumps({"benchmark": "sb3_action_heads", "steps": steps, "episodes": episodes, "seed": args.seed,
                      "heads": rows, "date": datetime.now(UTC).isoformat(timespec="seconds"),
                      "machine": platform.node()}))  # fmt: skip


if __name__ == "__main__":
    main()
