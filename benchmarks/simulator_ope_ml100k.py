"""On ml-100k: each panel policy's value in a learned simulator beside its off-policy estimate on the log.

Fits a simulator on MovieLens 100K (`SimulatorConfig` defaults, training capped at `--minutes`), then
`evaluation.simulator_check.simulator_check` on its held-out test users' exposures: uniform, popularity,
greedy and epsilon-greedy, per-step reward `1[rating >= 4]` (consumed and rated 4 or 5), DM / IPS /
SNIPS / DR with the item-frequency behaviour model, the verdict against DR. Then the same check with
the reward `1[rating >= threshold - 0.5]` (the simulator's continuous rating rounded as the log's integer
ones are) and the click alone, to locate a gap. Prints the tables to stderr, writes the main report into
`--out` and the simulator into `--save` when given, and prints one JSON line.

    python benchmarks/simulator_ope_ml100k.py [--quick] [--minutes 6] [--seed 0] [--out DIR] [--save DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

DATA = Path("/work/shared/data/ml-100k")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-minute training, fewer episodes and rows")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--minutes", type=float, default=6.0, help="training time cap (max_train_minutes)")
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument(
        "--max-rows", type=int, default=25_000, help="evaluated rows (default: all test users)"
    )
    parser.add_argument("--threshold", type=float, default=4.0, help="reward: rating >= this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None, help="save the fitted simulator here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from evaluation.simulator_check import SimulatorCheckConfig, StepReward, simulator_check
    from evaluation.simulator_check_report import markdown_table, write_check_report
    from recsim_env.data import load
    from simulators import SimulatorConfig, fit

    minutes = 1.0 if args.quick else args.minutes
    episodes = 128 if args.quick else args.episodes
    max_rows = 2000 if args.quick else args.max_rows
    data = load(args.data)
    started = time.perf_counter()
    fitted = fit(data, SimulatorConfig(max_train_minutes=minutes, seed=args.seed), progress=True)
    fit_seconds = time.perf_counter() - started
    if args.save is not None:
        from simulators import save

        save(fitted.simulator, args.save)
    config = SimulatorCheckConfig(episodes=episodes, max_rows=max_rows, seed=args.seed)
    started = time.perf_counter()
    result = simulator_check(
        fitted.simulator,
        reward=StepReward(signal="rating", threshold=args.threshold),
        config=config,
        on_policy=lambda name: print(f"policy {name}", file=sys.stderr, flush=True),
    )
    check_seconds = time.perf_counter() - started
    print(markdown_table(result), file=sys.stderr)
    # Where the gap comes from: the same check on the rating head's integer rounding (>= 3.5) and the click.
    breakdown = {}
    for signal, threshold in (("rating", args.threshold - 0.5), ("click", 1.0)):
        other = simulator_check(
            fitted.simulator, reward=StepReward(signal=signal, threshold=threshold), config=config
        )
        print(f"reward 1[{signal} >= {threshold:g}]", file=sys.stderr)
        print(markdown_table(other), file=sys.stderr)
        breakdown[f"{signal}>={threshold:g}"] = {
            "spearman": other["spearman"],
            "agree": other["agree"],
            "logged_value": other["log"]["logged_value"],
            "policies": {
                name: {
                    "simulated": e["simulated"]["value"],
                    "simulated_first_step": e["simulated"]["first_step"],
                    "DR": e["off_policy"]["DR"]["value"],
                    "DR_ci": [e["off_policy"]["DR"]["lower"], e["off_policy"]["DR"]["upper"]],
                    "verdict": e["verdict"],
                }
                for name, e in other["policies"].items()
            },
        }
    if args.out is not None:
        write_check_report(result, args.out, title="ml-100k: simulator against off-policy evaluation")
    line = {
        "benchmark": "simulator_ope_ml100k",
        "quick": args.quick,
        "seed": args.seed,
        "train_minutes_cap": minutes,
        "fit_seconds": round(fit_seconds, 1),
        "epochs_run": len({(h.get("member"), h.get("epoch")) for h in fitted.history}),
        "check_seconds": round(check_seconds, 1),
        "log_rows": result["log"]["rows"],
        "logged_value": result["log"]["logged_value"],
        "spearman": result["spearman"],
        "agree": result["agree"],
        "policies": {
            name: {
                "simulated": e["simulated"]["value"],
                "simulated_ci": [e["simulated"]["lower"], e["simulated"]["upper"]],
                "simulated_first_step": e["simulated"]["first_step"],
                **{k: e["off_policy"][k]["value"] for k in ("DM", "IPS", "SNIPS", "DR")},
                "DR_ci": [e["off_policy"]["DR"]["lower"], e["off_policy"]["DR"]["upper"]],
                "ess_share": e["ess_share"],
                "verdict": e["verdict"],
            }
            for name, e in result["policies"].items()
        },
        "other_rewards": breakdown,
        "python": platform.python_version(),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
