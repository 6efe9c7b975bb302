"""Poisoning SASRec on MovieLens 100K with fake users, and LoRec's defence (issue 27).

Trains SASRec (the settings of `benchmarks/encoders_ml100k.py`'s MODELS["sasrec"], one torch thread)
on the clean logs, on the logs with `--fraction` fake users of attack `--kind`, and on the poisoned
logs with LoRec's defence (`evaluation.attacks.defence`), all with the same seed and settings, and
prints one JSON line: target HR@10 / NDCG@10 clean, poisoned and defended, clean NDCG@10 of the three,
the gains and the defence's detection AUC.

Targets: `--targets` items drawn (with the seed) from the unpopular half of the catalogue: items with at
least one interaction whose interaction count is below the median count of such items; one attack
promotes all of them (each target event of a fake user picks one at random), and the figures are
averages over the targets.

    python benchmarks/attack_poison_ml100k.py --quick          # 12 epochs per training
    python benchmarks/attack_poison_ml100k.py --kinds insertion,sequential,random,popular
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DATA = Path("/work/shared/data/ml-100k")


def unpopular_targets(logs, n: int, seed: int) -> list:
    """`n` raw item ids drawn by `seed` from the items with at least one interaction and fewer than the
    median count of such items."""
    counts = np.bincount(logs.frame["item_id"].to_numpy(), minlength=logs.n_items)
    consumed = np.flatnonzero(counts > 0)
    pool = consumed[counts[consumed] < np.median(counts[consumed])]
    chosen = np.random.default_rng(seed).choice(pool, size=n, replace=False)
    return logs.item_ids.to_token(np.sort(chosen)).tolist()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--kinds", default="insertion", help="comma-separated attack kinds")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument(
        "--target-share", type=float, default=0.25, help="share of a fake user's events on targets"
    )
    parser.add_argument("--targets", type=int, default=3, help="target items drawn from the unpopular half")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="at most 12 epochs per training")
    parser.add_argument("--no-defence", action="store_true", help="clean and poisoned runs only")
    parser.add_argument("--use-text", action="store_true", help="the defence's text features")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from encoders_ml100k import MODELS, TRAINING

    from evaluation.attacks import PoisonConfig, poison
    from evaluation.attacks.defence import DefenceConfig
    from evaluation.attacks.measure import poisoning_experiment, train_clean
    from recsim_env import data as data_module
    from recsim_env.encoders import encoder_class
    from recsim_env.encoders.trainer import TrainerConfig

    torch.set_num_threads(args.threads)
    logs = data_module.load(args.data)
    targets = unpopular_targets(logs, args.targets, args.seed)
    epochs = min(args.epochs, 12) if args.quick else args.epochs
    trainer = TrainerConfig(
        epochs=epochs,
        seed=args.seed,
        num_threads=args.threads,
        progress=args.progress,
        lr=encoder_class("sasrec").learning_rate,
        **TRAINING["sasrec"],
    )
    defence = DefenceConfig(use_text=args.use_text, seed=args.seed)
    line = {
        "benchmark": "attack_poison_ml100k",
        "seed": args.seed,
        "fraction": args.fraction,
        "quick": args.quick,
        "target_items": targets,
        "target_share": args.target_share,
        "epochs_cap": epochs,
        "runs": {},
    }
    start = time.perf_counter()
    clean_run = train_clean(logs, model="sasrec", model_config=MODELS["sasrec"], trainer_config=trainer)
    for kind in args.kinds.split(","):
        poisoned = poison(
            logs,
            PoisonConfig(
                kind=kind,
                fraction=args.fraction,
                targets=tuple(targets),
                seed=args.seed,
                target_share=args.target_share,
            ),
        )
        result, _ = poisoning_experiment(
            logs,
            poisoned,
            model="sasrec",
            model_config=MODELS["sasrec"],
            trainer_config=trainer,
            defence_config=defence,
            clean_run=clean_run,
            defend=not args.no_defence,
        )
        line["runs"][kind] = result
    line["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
