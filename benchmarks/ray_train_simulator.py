"""A learned simulator on a world log: one process against 2 data-parallel Ray Train workers.

Both runs train the same `SimulatorConfig` (the defaults unless `--config` gives fields) with the same
seed on the same uniform-policy world log: the single process is `simulators.fit`, the 2-worker run
`simulators.distributed.fit_distributed` on the Ray cluster at `RAY_ADDRESS` when set, else on a local
Ray started for it. Reported per run: the best validation loss (what early stopping watches, over the
validation users of the split both runs share) and the held-out test users' click AUC and expected
calibration error (`simulators.report.log_metrics`). The seed-noise reference is the single process
trained with `--noise-seeds` other training seeds on the same split: each of them reuses the split
and the negatives of `--seed` but initialises, resamples and shuffles from its own seed (the config's
seed fixes all of them, so the reference runs use `simulators.train.fit_members` with their own seed).
Prints one JSON line.

    python benchmarks/ray_train_simulator.py            # 20,000 world steps, the default config
    python benchmarks/ray_train_simulator.py --quick    # 3,000 steps, a tiny config, 3 epochs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recsim_env.world.logging import log_world  # noqa: E402
from simulators import SimulatorConfig, fit  # noqa: E402
from simulators.distributed import fit_distributed  # noqa: E402
from simulators.ensemble import simulator_of  # noqa: E402
from simulators.report import log_metrics  # noqa: E402
from simulators.train import config_user_split, fit_members, member_users, prepare  # noqa: E402

QUICK = {"d_model": 16, "history_len": 8, "epochs": 3, "batch_size": 128}


def summary(simulator, log, test_users, history, seconds: float) -> dict:
    click = log_metrics(simulator, log.select(test_users))["click"]
    return {
        "best_valid_loss": min(row["valid_loss"] for row in history),
        "epochs_run": len(history),
        "test_click_auc": click["auc"],
        "test_click_ece": click["ece"],
        "seconds": round(seconds, 1),
    }


def reference_run(logs, config: SimulatorConfig, training_seed: int) -> dict:
    """The single process on `config.seed`'s split and negatives, trained from `training_seed`."""
    start = time.perf_counter()
    schema, item_features, log = prepare(logs, config)
    train_users, valid_users, test_users = config_user_split(log, config)
    training = dataclasses.replace(config, seed=training_seed)
    members, history = fit_members(
        training,
        schema,
        item_features,
        log,
        member_users(train_users, training),
        valid_users,
        time.perf_counter() + 60.0 * config.max_train_minutes,
        progress=False,
    )
    simulator = simulator_of(config, schema, members, log, np.asarray(logs.item_ids.tokens).tolist())
    return summary(simulator, log, test_users, history, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 steps, a tiny config, 3 epochs")
    parser.add_argument("--steps", type=int, default=20_000, help="uniform-policy world steps logged")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="{}", help="SimulatorConfig fields as JSON")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    parser.add_argument(
        "--noise-seeds", default="1,2", help="comma-separated training seeds of the reference"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    steps = 3000 if args.quick else args.steps
    logs = log_world("uniform", steps=steps, seed=args.seed, progress=False, num_envs=64)
    fields = {**(QUICK if args.quick else {}), **json.loads(args.config), "seed": args.seed}
    config = SimulatorConfig(**fields)

    start = time.perf_counter()
    result = fit(logs, config, num_threads=1)
    single = summary(
        result.simulator, result.log, result.test_users, result.history, time.perf_counter() - start
    )

    start = time.perf_counter()
    run = fit_distributed(
        logs,
        config,
        num_workers=args.workers,
        ray_address=os.environ.get("RAY_ADDRESS") or None,
        num_threads=1,
    )
    r = run.result
    distributed = summary(r.simulator, r.log, r.test_users, r.history, time.perf_counter() - start)
    distributed["workers"] = len(run.workers)
    distributed["nodes"] = len({w["node_id"] for w in run.workers})
    same_split = bool(np.array_equal(r.test_users, result.test_users))

    seeds = [int(s) for s in args.noise_seeds.split(",") if s.strip()]
    noise = {seed: reference_run(logs, config, seed) for seed in seeds}
    record = {
        "benchmark": "ray_train_simulator",
        "world_steps": steps,
        "seed": args.seed,
        "quick": args.quick,
        "config": config.to_dict(),
        "same_split": same_split,
        "single_process": single,
        f"ray_train_{args.workers}_workers": distributed,
        "seed_noise": {f"training_seed_{seed}": value for seed, value in noise.items()},
    }
    for metric in ("best_valid_loss", "test_click_auc"):
        values = [single[metric]] + [value[metric] for value in noise.values()]
        record[f"{metric}_difference"] = distributed[metric] - single[metric]
        record[f"{metric}_single_process_range"] = [min(values), max(values)]
        record[f"{metric}_single_process_pstdev"] = statistics.pstdev(values)
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
