"""How a learned simulator's value error grows with the distance between a policy and the logging policy.

For each logging policy (uniform, and softmax over the world's log item popularity at several
temperatures: lower is more concentrated on popular items), log `--steps` world steps, train a
simulator on them (the same settings and epochs for every logger) and roll out one fixed panel in the
world and in that simulator (`simulators.policy_values`): uniform, popularity and greedy (fitted once, on
a separate uniform world log, so the panel is the same for every simulator), filter-myopic and
filter-farsighted. Distance of a policy from a logger: the KL divergence of the items the policy shows
in the world from the items of that logger's logs (`item_kl_to_logs`). Over all (logger, policy) pairs
it reports Spearman's correlation of |relative error| with that distance (and a least-squares slope),
and with the policy's world return over uniform's (how much the policy exploits what users want).
Prints one JSON line.

`--mixture T` adds a simulator trained on a mixture of logging policies (half uniform, half softmax at
temperature T, the same total steps), the first remedy to compare with the uniform-only default.

    python benchmarks/simulator_value_bias.py [--quick] [--steps 100000] [--epochs 5] [--seed 0]
        [--temperatures 0.25,0.1,0.05] [--episodes 500] [--mixture 0.1] [--only-mixture]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

PANEL = ("uniform", "popularity", "greedy", "filter-myopic", "filter-farsighted")


def logger_entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of the logged item frequencies."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def mixture_logs(steps: int, seed: int, temperature: float):
    """World logs of two loggers, half the steps each: uniform (seed `seed`) and softmax at `temperature`
    (seed `seed + 1`, other users), as one `LoggedInteractions` (each row keeps its own logger's propensity)."""
    import pandas as pd

    from recsim_env.data import LoggedInteractions
    from recsim_env.world import UserWorld
    from recsim_env.world.logging import LoggingPolicy, generate_logs

    world = UserWorld()
    frames, user_tables, offset, items = [], [], 0, None
    for part, (kind, kwargs) in enumerate((("uniform", {}), ("softmax", {"temperature": temperature}))):
        logger = LoggingPolicy.for_world(kind, world, **kwargs)
        part_steps = steps // 2 if part == 0 else steps - steps // 2
        interactions, items, users = generate_logs(logger, steps=part_steps, seed=seed + part)
        shift = {"user_id": offset, "session_id": 10**9 * part, "slate_id": 10**12 * part}
        frames.append(interactions.assign(**{k: interactions[k] + v for k, v in shift.items()}))
        user_tables.append(users.assign(user_id=users["user_id"] + offset))
        offset += int(users["user_id"].max()) + 1
    return LoggedInteractions.from_frame(
        pd.concat(frames, ignore_index=True),
        feedback_cols=world.signals,
        item_catalogue=np.arange(world.n_items),
        items=items,
        users=pd.concat(user_tables, ignore_index=True),
        name="world-mixture",
        source=f"world log (uniform + softmax T={temperature:g})",
    )


def error_statistics(loggers: dict, exclude: tuple[str, ...] = ()) -> dict:
    """Over all (logger, policy) pairs of `loggers` (the JSON line's entry): Spearman's correlation of the
    absolute relative error with the policy's item KL from the logs and with its world return over the
    world return of uniform (how much better than random the policy is), and the error's slope per nat;
    the policies in `exclude` are left out."""
    from scipy.stats import spearmanr

    rows = [
        (e["item_kl_to_logs"], e["world"] / part["policies"]["uniform"]["world"], abs(e["relative_error"]))
        for part in loggers.values()
        for name, e in part["policies"].items()
        if name not in exclude
    ]
    distance, advantage, error = np.array(rows).T
    return {
        "spearman_abs_error_vs_item_kl": round(float(spearmanr(distance, error).statistic), 4),
        "slope_abs_error_per_nat": round(float(np.polyfit(distance, error, 1)[0]), 4),
        "spearman_abs_error_vs_world_return_over_uniform": round(
            float(spearmanr(advantage, error).statistic), 4
        ),
        "pairs": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 steps, 1 epoch, 50 episodes")
    parser.add_argument("--steps", type=int, default=None, help="logged steps per logger (default 100,000)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs, no early time cap (default 5)"
    )
    parser.add_argument("--episodes", type=int, default=None, help="episodes per policy (default 500)")
    parser.add_argument("--temperatures", default="0.25,0.1,0.05", help="softmax loggers' temperatures")
    parser.add_argument(
        "--mixture",
        type=float,
        default=None,
        help="also train on a mixture: half uniform, half softmax at this temperature (same total steps)",
    )
    parser.add_argument("--only-mixture", action="store_true", help="the uniform and mixture loggers only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--analyse", default=None, help="instead: recompute the error statistics of a JSON line in this file"
    )
    parser.add_argument(
        "--exclude", default=None, help="with --analyse: policies to leave out (comma-separated)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    if args.analyse:
        with open(args.analyse) as f:
            line = json.loads(f.read().strip().splitlines()[-1])
        exclude = tuple(args.exclude.split(",")) if args.exclude else ()
        stats = error_statistics(line["loggers"], exclude)
        print(json.dumps({"benchmark": "simulator_value_bias_analysis", "excluded": exclude, **stats}))
        return
    steps = args.steps or (10_000 if args.quick else 100_000)
    epochs = args.epochs or (1 if args.quick else 5)
    episodes = args.episodes or (50 if args.quick else 500)
    temperatures = [float(t) for t in args.temperatures.split(",") if t]

    import torch

    torch.set_num_threads(args.threads)
    from recsim_env.policies import LoggedItemStats
    from recsim_env.world import UserWorld
    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit
    from simulators.policy_values import policy_values, world_panel

    world = UserWorld()
    baseline_logs = log_world("uniform", steps=50_000, seed=args.seed + 1000, progress=False)
    panel = {
        k: v for k, v in world_panel(LoggedItemStats.from_logs(baseline_logs), world).items() if k in PANEL
    }
    loggers = {"uniform": {}}
    if not args.only_mixture:
        loggers |= {f"softmax T={t:g}": {"temperature": t} for t in temperatures}
    if args.mixture is not None:
        loggers[f"mixture uniform + softmax T={args.mixture:g}"] = {"mixture": args.mixture}
    config = SimulatorConfig(epochs=epochs, patience=epochs, max_train_minutes=float("inf"), seed=args.seed)
    out = {}
    for name, kwargs in loggers.items():
        print(f"logger {name}: logging and training", file=sys.stderr, flush=True)
        if "mixture" in kwargs:
            logs = mixture_logs(steps, args.seed, kwargs["mixture"])
        else:
            kind = "uniform" if name == "uniform" else "softmax"
            logs = log_world(kind, steps=steps, seed=args.seed, progress=False, **kwargs)
        started = time.perf_counter()
        result = fit(logs, config, progress=True, num_threads=args.threads)
        fit_seconds = time.perf_counter() - started
        counts = np.bincount(logs.frame["item_id"].to_numpy(), minlength=world.n_items)
        values = policy_values(
            result.simulator,
            panel,
            episodes=episodes,
            seed=args.seed + 2,
            item_category=world.item_category,
            logged_items=counts,
        )
        table = values["policies"]
        out[name] = {
            "logged_item_entropy": round(logger_entropy(counts), 3),
            "logged_click_rate": round(float(logs.frame["click"].mean()), 4),
            "fit_seconds": round(fit_seconds, 1),
            "best_valid_loss": round(min(h["valid_loss"] for h in result.history), 5),
            "spearman": round(values["spearman"], 4),
            "max_abs_relative_error": round(values["max_abs_relative_error"], 4),
            "policies": {
                p: {
                    "world": round(e["world"]["mean_return"], 3),
                    "simulator": round(e["simulator"]["mean_return"], 3),
                    "relative_error": round(e["relative_error"], 4),
                    "item_kl_to_logs": round(e["item_kl_to_logs"], 3),
                    "session_length_ks": round(e["session_length_ks"], 4),
                    "return_gap_ks": round(e["return_gap_ks"], 4),
                }
                for p, e in table.items()
            },
        }
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "simulator_value_bias",
                "logged_steps": steps,
                "epochs": epochs,
                "episodes": episodes,
                "seed": args.seed,
                "loggers": out,
                **error_statistics(out),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            }
        )
    )


if __name__ == "__main__":
    main()
