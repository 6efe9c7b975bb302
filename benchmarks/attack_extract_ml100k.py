"""Benchmark: few-shot model extraction of a SASRec victim on MovieLens 100K.

The victim is SASRec with `benchmarks/encoders_ml100k.py`'s settings (MODELS["sasrec"], lr 2e-3,
patience 10, leave-one-out split, seed 0), trained once and reused by every attack seed (it is cached
in `--victim DIR`; a checkpoint already there is loaded, after its catalogue is checked). Per attack
seed, the adversary holds `--fraction` of the users (drawn by the seed) and may ask the victim for
`--budget` top-100 lists; both adversaries (few-shot extraction, plain distillation) spend the same
budget, and are measured on the other users: overlap@10 with the victim and leave-one-out NDCG@10 /
HR@10. The budget curve reruns both at the `--curve` budgets.

    python benchmarks/attack_extract_ml100k.py --seeds 0 1 2       # the figures of RESULTS_extract.md
    python benchmarks/attack_extract_ml100k.py --quick             # 1 seed, small budget, capped epochs

Prints one JSON line: per seed and the mean / std over seeds of each adversary's overlap@10 and
accuracy, the margin (few-shot minus distillation) per seed, and the budget curve.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from evaluation.attacks.extraction import (  # noqa: E402
    EVAL_K,
    VictimOracle,
    distillation_extraction,
    few_shot_extraction,
    measure_surrogate,
    run_extraction,
    split_users,
    top_k_lists,
    train_sampler,
)
from evaluation.attacks.extraction_config import ExtractionConfig  # noqa: E402
from recsim_env import data, encoders  # noqa: E402
from recsim_env.checkpoint import is_artifact  # noqa: E402
from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train  # noqa: E402

DEFAULT_DATA = next(
    (p for p in (REPO / "../shared/data/ml-100k", Path("/work/shared/data/ml-100k")) if p.is_dir()),
    REPO / "../shared/data/ml-100k",
)
VICTIM_SETTINGS = {
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 1,
    "dropout": 0.2,
}  # encoders_ml100k MODELS["sasrec"]
MAX_LEN = 50


def victim_checkpoint(
    directory: Path, logs, *, threads: int, progress: bool, max_epochs: int
) -> tuple[encoders.Checkpoint, dict]:
    """The victim: loaded from `directory` when a checkpoint is there, else trained (seed 0) and saved."""
    if is_artifact(directory):
        checkpoint = encoders.load_checkpoint(directory, item_ids=logs.item_ids)
        return checkpoint, {"trained_now": False, **checkpoint.metadata.get("result", {})}
    seed_everything(0)
    victim = encoders.build("sasrec", {"n_items": logs.n_items, "max_len": MAX_LEN, **VICTIM_SETTINGS})
    config = TrainerConfig(
        epochs=max_epochs,
        lr=type(victim).learning_rate,
        patience=10,
        seed=0,
        num_threads=threads,
        progress=progress,
    )
    result = train(victim, logs.sequences(), config)
    summary = {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "test_ndcg@10": result.test["seen_excluded"]["ndcg@10"],
        "test_hr@10": result.test["seen_excluded"]["hr@10"],
        "seconds_per_epoch": result.seconds_per_epoch,
    }
    encoders.save(
        directory, victim, item_ids=logs.item_ids, user_ids=logs.user_ids, metadata={"result": summary}
    )
    return encoders.load_checkpoint(directory, item_ids=logs.item_ids), {"trained_now": True, **summary}


ABLATIONS: dict[str, dict] = {
    "few_shot": {},
    "no_repair": {"repair_weight": 0.0},
    "no_real_ce": {"real_weight": 0.0},
    "no_augmentation": {"real_query_share": 1.0},
    "no_augmentation_no_repair": {"real_query_share": 1.0, "repair_weight": 0.0},
}
"""Few-shot adversaries with one part taken out (ExtractionConfig changes), beside plain distillation."""


def ablation(victim, logs, config: ExtractionConfig) -> dict[str, dict]:
    """overlap@10 and NDCG@10 of every `ABLATIONS` variant and of plain distillation at `config.budget`
    (one user split and one sampler per seed, as `run_extraction` uses)."""
    from recsim_env.encoders.trainer import resolve_device

    device = resolve_device(config.device)
    data = split_users(logs, config.fraction, config.seed)
    victim_lists = top_k_lists(victim, data.held_out, k=EVAL_K, device=device)
    sampler = train_sampler(data.sequences, data.n_items, config, device)
    out = {}
    for name, changes in ABLATIONS.items():
        variant = dataclasses.replace(config, **changes)
        oracle = VictimOracle(victim, budget=config.budget, list_k=config.list_k, device=device)
        result = few_shot_extraction(oracle, data, variant, sampler=sampler, device=device)
        out[name] = measure_surrogate(result, data.held_out, victim_lists, device)
    oracle = VictimOracle(victim, budget=config.budget, list_k=config.list_k, device=device)
    result = distillation_extraction(oracle, data, config, device=device)
    out["distillation"] = measure_surrogate(result, data.held_out, victim_lists, device)
    return out


def extraction_config(args, seed: int, **fields) -> ExtractionConfig:
    """The `ExtractionConfig` of one attack seed from the command line (`--config` adds fields)."""
    return ExtractionConfig(
        fraction=args.fraction,
        budget=args.budget,
        epochs=args.epochs,
        max_seconds=args.max_seconds,
        seed=seed,
        device=args.device,
        num_threads=args.threads,
        progress=args.progress,
        **fields,
        **json.loads(args.config),
    )


def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "per_seed": values,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--victim", type=Path, default=Path("/tmp/recsim-extract-victim-ml100k"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--curve", type=int, nargs="*", default=[1000, 2500])
    parser.add_argument("--epochs", type=int, default=40, help="most surrogate epochs")
    parser.add_argument("--max-seconds", type=float, default=None, help="cap on each surrogate's training")
    parser.add_argument("--config", type=str, default="{}", help="more ExtractionConfig fields as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="1 seed, budget 1000, no curve, 10 epochs")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="instead: each part of the few-shot adversary taken out, at --budget",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.curve, args.epochs = args.seeds[:1], 1000, [], 10
    if not (args.data / "ml-100k.inter").is_file():
        raise SystemExit(f"MovieLens 100K not found at {args.data.resolve()}")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    logs = data.load(args.data)
    checkpoint, victim_info = victim_checkpoint(
        args.victim, logs, threads=args.threads, progress=args.progress, max_epochs=15 if args.quick else 200
    )
    if args.ablation:
        return ablation_main(args, checkpoint, logs, victim_info, start)
    runs = []
    for seed in args.seeds:
        config = extraction_config(args, seed, budget_curve=tuple(args.curve))
        summary = run_extraction(checkpoint.encoder, logs, config).summary()
        runs.append({"seed": seed, **{k: v for k, v in summary.items() if k != "config"}})
        print(
            f"seed {seed}: overlap@10 few-shot {summary['overlap10_surrogate']:.4f} "
            f"distillation {summary['overlap10_distillation']:.4f} ({summary['seconds']:.0f} s)",
            file=sys.stderr,
        )

    few = [r["overlap10_surrogate"] for r in runs]
    plain = [r["overlap10_distillation"] for r in runs]
    margins = [a - b for a, b in zip(few, plain, strict=True)]
    curve = {}
    for budget in sorted({p["budget"] for r in runs for p in r["budget_curve"]}):
        points = [next(p for p in r["budget_curve"] if p["budget"] == budget) for r in runs]
        curve[str(budget)] = {
            method: {
                m: statistics.fmean(p[method][m] for p in points) for m in ("overlap10", "ndcg@10", "hr@10")
            }
            for method in ("few_shot", "distillation")
        }
    out = {
        "benchmark": "attack_extract_ml100k",
        "quick": args.quick,
        "victim": {"path": str(args.victim), **victim_info},
        "fraction": args.fraction,
        "budget": args.budget,
        "seeds": args.seeds,
        "overlap10_surrogate": mean_std(few),
        "overlap10_distillation": mean_std(plain),
        "margin": mean_std(margins),
        "ndcg10_surrogate": mean_std([r["accuracy"]["surrogate"]["ndcg@10"] for r in runs]),
        "ndcg10_distillation": mean_std([r["accuracy"]["distillation"]["ndcg@10"] for r in runs]),
        "ndcg10_victim": mean_std([r["accuracy"]["victim"]["ndcg@10"] for r in runs]),
        "hr10_surrogate": mean_std([r["accuracy"]["surrogate"]["hr@10"] for r in runs]),
        "hr10_distillation": mean_std([r["accuracy"]["distillation"]["hr@10"] for r in runs]),
        "budget_curve_mean": curve,
        "config": dataclasses.asdict(config) | {"seed": None},
        "runs": runs,
        "device": runs[0]["device"],
        "threads": args.threads,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out))
    return out


def ablation_main(args, checkpoint, logs, victim_info: dict, start: float) -> dict:
    per_seed = {}
    for seed in args.seeds:
        config = extraction_config(args, seed)
        per_seed[seed] = ablation(checkpoint.encoder, logs, config)
        shown = ", ".join(f"{k} {v['overlap10']:.4f}" for k, v in per_seed[seed].items())
        print(f"seed {seed}: overlap@10 {shown}", file=sys.stderr)
    variants = list(next(iter(per_seed.values())))
    out = {
        "benchmark": "attack_extract_ml100k:ablation",
        "quick": args.quick,
        "victim": {"path": str(args.victim), **victim_info},
        "fraction": args.fraction,
        "budget": args.budget,
        "seeds": args.seeds,
        "ablations": {name: ABLATIONS.get(name, "plain distillation") for name in variants},
        "overlap10": {
            name: mean_std([per_seed[s][name]["overlap10"] for s in args.seeds]) for name in variants
        },
        "ndcg10": {name: mean_std([per_seed[s][name]["ndcg@10"] for s in args.seeds]) for name in variants},
        "runs": {str(s): runs for s, runs in per_seed.items()},
        "config": dataclasses.asdict(config) | {"seed": None},
        "threads": args.threads,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
