"""Poisoning SASRec on MovieLens 100K with fake users, and LoRec's defence (issue 27).

For each seed of `--seeds`: draws `--targets` target items with the seed from the unpopular half of the
catalogue (items with at least one interaction whose interaction count is below the median count of
such items), trains SASRec (the settings of `benchmarks/encoders_ml100k.py`'s MODELS["sasrec"], one
torch thread) on the clean logs, on the logs with `--fraction` fake users of each attack of `--kinds`
promoting all the targets at once (each target event of a fake user picks one at random), and on the
poisoned logs with LoRec's defence (`evaluation.attacks.defence`, its `DefenceConfig` defaults or
`--defence`'s overrides), all with the seed's settings. Each fake user has at most `--max-events`
events, targets included (default: the real users' mean sequence length, rounded down).

Prints one JSON line: per seed and attack the per-target and mean target HR@10 (clean, poisoned,
defended) and the clean-test NDCG@10 of the three models; per attack the acceptance table:

- `hr10_ratio`: mean over seeds of the poisoned target HR@10 over the mean of the clean one (each
  already a mean over the seed's targets), the clean mean floored at `GAIN_FLOOR`; bar: at least 5;
- `gain_removed`: 1 - (defended - clean) / (poisoned - clean) of those seed means; bar: at least 0.5;
- `ndcg10_defended_minus_clean`: mean and standard error over seeds of the defended model's clean-test
  NDCG@10 minus the undefended clean model's, and that mean relative to the clean mean; bar: at least -3%.

    python benchmarks/attack_poison_ml100k.py --quick          # seed 0, 12 epochs per training
    python benchmarks/attack_poison_ml100k.py                  # seeds 0, 1, 2 to early stopping
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DATA = Path("/work/shared/data/ml-100k")
HR_RATIO_BAR = 5.0
GAIN_REMOVED_BAR = 0.5
NDCG_DROP_BAR = -0.03


def unpopular_targets(logs, n: int, seed: int) -> list:
    """`n` raw item ids drawn by `seed` from the items with at least one interaction and fewer than the
    median count of such items."""
    counts = np.bincount(logs.frame["item_id"].to_numpy(), minlength=logs.n_items)
    consumed = np.flatnonzero(counts > 0)
    pool = consumed[counts[consumed] < np.median(counts[consumed])]
    chosen = np.random.default_rng(seed).choice(pool, size=n, replace=False)
    return logs.item_ids.to_token(np.sort(chosen)).tolist()


def poison_unpopular(logs, args, max_events: int | None):
    """`(targets, PoisonedLogs)`: `args.targets` unpopular targets drawn by `args.seed`, promoted by an
    `args.kind` attack of `args.fraction` fake users at `args.target_share` (the probes' one attack)."""
    from evaluation.attacks import PoisonConfig, poison

    targets = unpopular_targets(logs, args.targets, args.seed)
    config = PoisonConfig(
        kind=args.kind,
        fraction=args.fraction,
        targets=tuple(targets),
        seed=args.seed,
        target_share=args.target_share,
        max_events=max_events,
    )
    return targets, poison(logs, config)


def mean_and_se(values) -> tuple[float, float]:
    """Mean and standard error (ddof 1; NaN for one value) of `values`."""
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def acceptance(per_seed: list[dict], gain_floor: float, defended: bool) -> dict:
    """The acceptance figures of one attack over its per-seed results (see the module docstring)."""
    clean = np.array([r["target_hr10_clean"] for r in per_seed])
    poisoned = np.array([r["target_hr10_poisoned"] for r in per_seed])
    table = {
        "target_hr10_clean_mean": float(clean.mean()),
        "target_hr10_poisoned_mean": float(poisoned.mean()),
        "hr10_ratio": float(poisoned.mean() / max(clean.mean(), gain_floor)),
        "hr10_ratio_per_seed": [float(p / max(c, gain_floor)) for c, p in zip(clean, poisoned, strict=True)],
        "gain_floor": gain_floor,
        "ndcg10_clean_mean": float(np.mean([r["ndcg10_clean"] for r in per_seed])),
        "ndcg10_poisoned_mean": float(np.mean([r["ndcg10_poisoned"] for r in per_seed])),
    }
    table["pass_hr10_ratio"] = table["hr10_ratio"] >= HR_RATIO_BAR
    if not defended:
        return table
    defended_hr = np.array([r["target_hr10_defended"] for r in per_seed])
    gain = poisoned.mean() - clean.mean()
    table["target_hr10_defended_mean"] = float(defended_hr.mean())
    table["gain_removed"] = float(1.0 - (defended_hr.mean() - clean.mean()) / gain) if gain > 0 else None
    table["gain_removed_per_seed"] = [
        float(1.0 - (d - c) / (p - c)) if p > c else None
        for c, p, d in zip(clean, poisoned, defended_hr, strict=True)
    ]
    diffs = [r["ndcg10_defended"] - r["ndcg10_clean"] for r in per_seed]
    mean, se = mean_and_se(diffs)
    table["ndcg10_defended_mean"] = float(np.mean([r["ndcg10_defended"] for r in per_seed]))
    table["ndcg10_defended_minus_clean"] = {"mean": mean, "se": se, "per_seed": [float(d) for d in diffs]}
    table["ndcg10_defended_vs_clean"] = mean / table["ndcg10_clean_mean"]
    table["pass_gain_removed"] = (
        table["gain_removed"] is not None and table["gain_removed"] >= GAIN_REMOVED_BAR
    )
    table["pass_ndcg10"] = table["ndcg10_defended_vs_clean"] >= NDCG_DROP_BAR
    return table


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--kinds", default="splice", help="comma-separated attack kinds")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument(
        "--target-shares",
        default="0.5",
        help="comma-separated shares of a fake user's events on targets, one attack per kind and share",
    )
    parser.add_argument(
        "--max-events", type=int, default=None, help="most events per fake user (default: real mean length)"
    )
    parser.add_argument("--targets", type=int, default=5, help="target items drawn from the unpopular half")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; --quick: 0)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="seed 0 and at most 12 epochs per training")
    parser.add_argument("--no-defence", action="store_true", help="clean and poisoned runs only")
    parser.add_argument("--use-text", action="store_true", help="the defence's text features")
    parser.add_argument(
        "--defence", default="{}", help="DefenceConfig overrides as JSON (default: its defaults)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from encoders_ml100k import MODELS, TRAINING

    from evaluation.attacks import PoisonConfig, poison
    from evaluation.attacks.defence import DefenceConfig
    from evaluation.attacks.measure import GAIN_FLOOR, poisoning_experiment, train_clean
    from recsim_env import data as data_module
    from recsim_env.encoders import encoder_class
    from recsim_env.encoders.trainer import TrainerConfig

    torch.set_num_threads(args.threads)
    logs = data_module.load(args.data)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    attacks = [(k, float(s)) for k in args.kinds.split(",") for s in args.target_shares.split(",")]
    max_events = args.max_events or int(logs.sequences().lengths().mean())
    epochs = min(args.epochs, 12) if args.quick else args.epochs
    line = {
        "benchmark": "attack_poison_ml100k",
        "seeds": seeds,
        "fraction": args.fraction,
        "quick": args.quick,
        "n_targets": args.targets,
        "max_events": max_events,
        "epochs_cap": epochs,
        "runs": {f"{kind}@{share}": [] for kind, share in attacks},
    }
    start = time.perf_counter()
    for seed in seeds:
        targets = unpopular_targets(logs, args.targets, seed)
        trainer = TrainerConfig(
            epochs=epochs,
            seed=seed,
            num_threads=args.threads,
            progress=args.progress,
            lr=encoder_class("sasrec").learning_rate,
            **TRAINING["sasrec"],
        )
        defence = DefenceConfig(**{"use_text": args.use_text, **json.loads(args.defence), "seed": seed})
        clean_run = train_clean(logs, model="sasrec", model_config=MODELS["sasrec"], trainer_config=trainer)
        for kind, share in attacks:
            poisoned = poison(
                logs,
                PoisonConfig(
                    kind=kind,
                    fraction=args.fraction,
                    targets=tuple(targets),
                    seed=seed,
                    target_share=share,
                    max_events=max_events,
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
            line["runs"][f"{kind}@{share}"].append({"seed": seed, "target_items": targets, **result})
            print(
                json.dumps(
                    {
                        "progress": f"{kind}@{share}",
                        "seed": seed,
                        "seconds": round(time.perf_counter() - start),
                    }
                ),
                file=sys.stderr,
            )
    line["acceptance"] = {
        kind: acceptance(runs, GAIN_FLOOR, defended=not args.no_defence)
        for kind, runs in line["runs"].items()
    }
    line["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
