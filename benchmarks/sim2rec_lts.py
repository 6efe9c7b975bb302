"""Sim2Rec on the paper's synthetic benchmark (SeqRecLTS-v0): train on choc_mean in {6..9} U {19..21},
evaluate zero-shot on the held-out domain 14. Prints one JSON line with, per variant (Sim2Rec,
DIRECT, UNIVERSAL, ORACLE), the cumulative engagement over 3 seeds (mean +- std of the per-seed
means), plus each seed's figures on domains 6 and 20 to show what adapting is worth. Policies act
stochastically, as trained: the best behaviour here mixes clickbait and wholesome documents, and the
argmax of a learned mixture is a different (worse) policy.

    python benchmarks/sim2rec_lts.py [--quick] [--seeds 3] [--timesteps N]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from agents.sim2rec import VARIANTS, Sim2RecConfig, evaluate, train
from recsim_env.envs.lts import SIM2REC_TEST_DOMAIN


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 60k steps: a smoke run of a few minutes"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=500_000)
    parser.add_argument("--episodes", type=int, default=64, help="evaluation users per domain")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    timesteps = 60_000 if args.quick else args.timesteps
    table = {}
    for variant in ("sim2rec", "direct", "universal", "oracle"):
        assert variant in VARIANTS
        per_seed, other_domains, seconds = [], [], []
        for seed in range(seeds):
            config = Sim2RecConfig(
                variant=variant,
                total_timesteps=timesteps,
                seed=seed,
                window=10,
                reward_scale=0.05,
                device=args.device,
            )
            start = time.perf_counter()
            policy = train(config, progress=False)
            seconds.append(time.perf_counter() - start)
            per_seed.append(
                float(
                    evaluate(
                        policy, choc_mean=SIM2REC_TEST_DOMAIN, episodes=args.episodes, deterministic=False
                    ).mean()
                )
            )
            other_domains.append(
                {
                    str(d): float(
                        evaluate(policy, choc_mean=d, episodes=args.episodes, deterministic=False).mean()
                    )
                    for d in (6.0, 20.0)
                }
            )
        table[variant] = {
            "test_domain_engagement_mean": float(np.mean(per_seed)),
            "test_domain_engagement_std": float(np.std(per_seed)),
            "per_seed": per_seed,
            "other_domains_per_seed": other_domains,
            "train_seconds_mean": float(np.mean(seconds)),
        }
    print(
        json.dumps(
            {
                "benchmark": "sim2rec_lts",
                "test_domain": SIM2REC_TEST_DOMAIN,
                "seeds": seeds,
                "timesteps": timesteps,
                "results": table,
                "torch": torch.__version__,
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
