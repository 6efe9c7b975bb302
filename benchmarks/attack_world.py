"""Poisoned learned simulators and their policies, measured in the world: clean vs poisoned vs defended.

`evaluation.attacks.world.run_world_attack`: log `--steps` uniform world steps, inject `--fraction` fake
users promoting `--n-targets` items drawn by seed from the world's least popular half (`--kind`
attack), fit a simulator on the clean log, on the poisoned one, on the poisoned one weighed by LoRec's
calibrator (`evaluation.attacks.defence.defend`) and (the ceiling of reweighting) with the fake users at
weight 0; then (a) a probe policy measures the targets' click rate when shown in each simulator and in
the world, and (b) each simulator's greedy policy (its most probable clicks) is rolled out in the world,
counting target shows and clicks per 1,000 steps. Prints one JSON line; `--report DIR` also writes the
report (report.md, report.json, world_attack.png).

    python benchmarks/attack_world.py [--quick] [--seed 0] [--steps 100000] [--epochs 5]
        [--fraction 0.01] [--kind sequential] [--n-targets 1] [--episodes 300] [--report DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def _brief(counts: dict) -> dict:
    """The counts a reader compares, rounded."""
    keys = (
        "target_shown_per_1000",
        "target_shown_per_1000_ci95",
        "target_clicked_per_1000",
        "target_clicked_per_1000_ci95",
        "target_click_rate_when_shown",
        "click_rate",
        "mean_return",
        "steps",
    )

    def r(x):
        if isinstance(x, list):
            return [r(v) for v in x]
        return round(x, 4) if isinstance(x, float) else x

    return {k: r(counts[k]) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 steps, 2 epochs, 100 episodes")
    parser.add_argument("--steps", type=int, default=None, help="logged world steps (default 100,000)")
    parser.add_argument("--epochs", type=int, default=None, help="simulator epochs (default 5)")
    parser.add_argument("--episodes", type=int, default=None, help="probe and policy episodes (default 300)")
    parser.add_argument("--fraction", type=float, default=0.01, help="fake users per real user")
    parser.add_argument("--kind", default="sequential", help="attack: sequential, random or popular")
    parser.add_argument("--n-targets", type=int, default=1, help="targets drawn from the least popular half")
    parser.add_argument(
        "--target-share", type=float, default=0.1, help="share of target events per fake user"
    )
    parser.add_argument(
        "--no-oracle", action="store_true", help="skip the oracle arm (fake users at weight 0)"
    )
    parser.add_argument("--report", default=None, help="also write the report into this directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    steps = args.steps or (20_000 if args.quick else 100_000)
    epochs = args.epochs or (2 if args.quick else 5)
    episodes = args.episodes or (100 if args.quick else 300)

    import torch

    torch.set_num_threads(args.threads)
    from evaluation.attacks.world import WorldAttackConfig, run_world_attack, world_report

    config = WorldAttackConfig(
        steps=steps,
        epochs=epochs,
        kind=args.kind,
        fraction=args.fraction,
        n_targets=args.n_targets,
        target_share=args.target_share,
        probe_episodes=episodes,
        policy_episodes=episodes,
        oracle=not args.no_oracle,
        seed=args.seed,
    )
    started = time.perf_counter()
    result = run_world_attack(config, progress=sys.stderr.isatty(), num_threads=args.threads)
    if args.report:
        world_report(result, args.report)
    world_rate = result.world_probe["target_click_rate_when_shown"]
    arms = {
        arm: {
            "simulated_target_click_rate": round(
                entry["probe_in_simulator"]["target_click_rate_when_shown"], 4
            ),
            "simulated_other_click_rate": round(
                entry["probe_in_simulator"]["other_click_rate_when_shown"], 4
            ),
            "target_click_rate_error": round(entry["target_click_rate_error"], 4),
            "fit_seconds": round(entry["fit_seconds"], 1),
            "policy_in_world": _brief(entry["policy_in_world"]),
        }
        for arm, entry in result.arms.items()
    }
    print(
        json.dumps(
            {
                "benchmark": "attack_world",
                "config": config.to_dict(),
                "targets": result.targets.tolist(),
                "n_real_users": result.n_real_users,
                "n_fake_users": result.n_fake_users,
                "defence": {k: round(v, 4) for k, v in result.defence.items()},
                "world_target_click_rate": round(world_rate, 4),
                "world_other_click_rate": round(result.world_probe["other_click_rate_when_shown"], 4),
                "uniform_in_world": _brief(result.uniform_in_world),
                "arms": arms,
                "seconds": round(time.perf_counter() - started, 1),
                "threads": args.threads,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            }
        )
    )


if __name__ == "__main__":
    main()
