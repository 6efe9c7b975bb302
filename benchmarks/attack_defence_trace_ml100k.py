"""LoRec's calibration run on poisoned MovieLens 100K, update by update: who each flagging rule would flag.

Poisons ML-100k as `attack_poison_ml100k.py` does (`--kind`, `--target-share`, `--fraction`, `--targets`
drawn from the unpopular half with the seed, at most `--max-events` events per fake user, default the
real users' mean length), runs the defence's calibration run (SASRec, `DefenceConfig` defaults or
`--defence`'s overrides, `calibration_epochs` epochs, no retraining) and records each update's
out-of-fold probabilities of the logged users and of the defender's simulated fakes. Prints one JSON
line: per update, the fake users' probabilities, quantiles of the real users' and of the simulated
fakes'; then, for each `--rule` (DefenceConfig overrides of the flagging fields, applied to the recorded
scores), per update the threshold and how many fake and real users it flags, and over the updates how
many fake and real users it flags at least four times (LoRec's weight rule lowers those weights).

The rules are replayed on the scores of one run, whose weights came from the run's own rule, so a
replayed rule's counts are what it would flag on these scores, not a run of its own. The fake-user list
is the experimenter's: read here to explain a rule, never used by the defence.

    python benchmarks/attack_defence_trace_ml100k.py --rule '{}' --rule '{"flag_recall": null}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DATA = Path("/work/shared/data/ml-100k")
QUANTILES = (0.1, 0.25, 0.5, 0.9, 0.95, 0.99)


def quantiles(values: np.ndarray) -> dict[str, float]:
    """`QUANTILES` of `values`, rounded."""
    return {
        str(q): round(float(v), 4) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--kind", default="splice")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--target-share", type=float, default=0.5)
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--defence", default="{}", help="DefenceConfig overrides of the run, as JSON")
    parser.add_argument("--rule", action="append", default=None, help="flagging overrides, JSON (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch
    from attack_poison_ml100k import poison_unpopular
    from encoders_ml100k import MODELS, TRAINING

    from evaluation.attacks.defence import (
        Calibrator,
        CalibratorScores,
        DefenceConfig,
        LoRecWeights,
        flag_threshold,
        flagged_users,
    )
    from recsim_env import data as data_module
    from recsim_env import encoders
    from recsim_env.encoders import encoder_class
    from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    logs = data_module.load(args.data)
    max_events = args.max_events or int(logs.sequences().lengths().mean())
    _, poisoned = poison_unpopular(logs, args, max_events)
    data = poisoned.data
    config = DefenceConfig(**{**json.loads(args.defence), "seed": args.seed})
    calibrator = Calibrator(data, config)
    fake = poisoned.fake_users[calibrator.users]
    weights = LoRecWeights(data.n_users, config.initial_weight)
    fits: list[tuple[int, CalibratorScores]] = []

    def reweight(epoch: int, encoder) -> np.ndarray | None:
        if not config.update_due(epoch, len(fits)):
            return None
        table = encoder.item_table().detach().float().cpu().numpy().astype(np.float64)
        fit = calibrator.score(table)
        fits.append((epoch, fit))
        applied = weights.update(fit.logged, calibrator.users, flagged_users(fit, calibrator.users, config))
        return weights.weights() if applied else None

    trainer = TrainerConfig(
        epochs=config.calibration_epochs,
        seed=args.seed,
        num_threads=args.threads,
        progress=False,
        lr=encoder_class("sasrec").learning_rate,
        **{**TRAINING["sasrec"], "patience": config.calibration_epochs},
    )
    seed_everything(args.seed)
    encoder = encoders.build("sasrec", {"n_items": data.n_items, "max_len": 50, **MODELS["sasrec"]})
    train(encoder, data.sequences(), trainer, eval_users=poisoned.real_users, reweight=reweight)

    line = {
        "benchmark": "attack_defence_trace_ml100k",
        "kind": args.kind,
        "target_share": args.target_share,
        "seed": args.seed,
        "max_events": max_events,
        "defence": json.loads(args.defence),
        "updates": [
            {
                "epoch": epoch,
                "fake_scores": np.round(np.sort(fit.logged[fake]), 3).tolist(),
                "real_quantiles": quantiles(fit.logged[~fake]),
                "simulated_quantiles": quantiles(fit.simulated),
            }
            for epoch, fit in fits
        ],
        "rules": [],
    }
    for overrides in args.rule or ["{}"]:
        rule = dataclasses.replace(config, **json.loads(overrides))
        counts = np.zeros(len(calibrator.users), dtype=np.int64)
        per_update = []
        for _, fit in fits:
            flagged = np.isin(calibrator.users, flagged_users(fit, calibrator.users, rule))
            counts += flagged
            threshold = flag_threshold(fit, rule)
            per_update.append(
                {
                    "threshold": None if threshold is None else round(threshold, 4),
                    "fake": int((flagged & fake).sum()),
                    "real": int((flagged & ~fake).sum()),
                }
            )
        line["rules"].append(
            {
                "rule": json.loads(overrides),
                "per_update": per_update,
                "fake_flagged_4_or_more": int((counts[fake] >= 4).sum()),
                "real_flagged_4_or_more": int((counts[~fake] >= 4).sum()),
            }
        )
    line["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
