"""SASRec on MovieLens 100K: one process against 2 data-parallel Ray Train workers, test NDCG@10 each.

Both runs use `benchmarks/encoders_ml100k.py`'s SASRec settings (`MODELS["sasrec"]`, patience 10, the
encoder's learning rate, max length 50, full ranking, early stopping on validation NDCG@10 with history
items excluded) and the same seed. The single process is `trainer.train`; the 2-worker run is
`recsim_env.encoders.distributed.train_distributed` reading the log as a Parquet file through
`ray.data.read_parquet`, on the Ray cluster at `RAY_ADDRESS` when set, else on a local Ray started for
it. The seed-noise reference is the single-process spread over seeds 0, 1, 2 in benchmarks/RESULTS.md
(test NDCG@10 seen excluded 0.1142, 0.1084, 0.1136; `--reference` to give others). Prints one JSON line.

    python benchmarks/ray_train_encoder.py            # to early stopping (up to 200 epochs)
    python benchmarks/ray_train_encoder.py --quick    # at most 15 epochs each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from benchmarks.encoders_ml100k import DEFAULT_DATA, MAX_LEN, MODELS, TRAINING  # noqa: E402
from recsim_env import data, encoders  # noqa: E402
from recsim_env.encoders.distributed import train_distributed  # noqa: E402
from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train  # noqa: E402

REFERENCE_NDCG = (0.1142, 0.1084, 0.1136)
"""Single-process SASRec test NDCG@10 (seen excluded), seeds 0, 1, 2 (benchmarks/RESULTS.md)."""


def summary(result, seconds: float) -> dict:
    return {
        "test_ndcg@10": result.test["seen_excluded"]["ndcg@10"],
        "test_hr@10": result.test["seen_excluded"]["hr@10"],
        "valid_ndcg@10": result.valid["seen_excluded"]["ndcg@10"],
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "seconds_per_epoch": round(result.seconds_per_epoch, 2),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ml-100k folder (RecBole atomic files)")
    parser.add_argument("--quick", action="store_true", help="at most 15 epochs per run")
    parser.add_argument("--epochs", type=int, default=200, help="most epochs per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process / worker")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    parser.add_argument(
        "--reference",
        default=",".join(map(str, REFERENCE_NDCG)),
        help="comma-separated single-process test NDCG@10 of other seeds (the seed noise)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    logs = data.load(args.data)
    base = {"max_len": MAX_LEN, **MODELS["sasrec"]}
    settings = dict(TRAINING["sasrec"])
    config = TrainerConfig(
        epochs=min(args.epochs, 15) if args.quick else args.epochs,
        seed=args.seed,
        lr=encoders.encoder_class("sasrec").learning_rate,
        device="cpu",
        num_threads=args.threads,
        progress=not args.no_progress,
        **settings,
    )

    start = time.perf_counter()
    seed_everything(args.seed)
    encoder = encoders.build("sasrec", {"n_items": logs.n_items, **base})
    single = summary(train(encoder, logs.sequences(), config), time.perf_counter() - start)

    with tempfile.TemporaryDirectory(prefix="ray-train-bench-") as folder:
        parquet = Path(folder) / "ml-100k.parquet"
        logs.to_parquet(parquet)
        start = time.perf_counter()
        run = train_distributed(
            "sasrec",
            base,
            parquet,
            config,
            num_workers=args.workers,
            ray_address=os.environ.get("RAY_ADDRESS") or None,
        )
        distributed = summary(run.result, time.perf_counter() - start)
    distributed["workers"] = len(run.workers)
    distributed["nodes"] = len({w["node_id"] for w in run.workers})

    reference = [float(x) for x in args.reference.split(",") if x.strip()]
    spread = statistics.pstdev(reference)
    difference = distributed["test_ndcg@10"] - single["test_ndcg@10"]
    record = {
        "benchmark": "ray_train_encoder",
        "model": "sasrec",
        "data": Path(args.data).name,
        "seed": args.seed,
        "quick": args.quick,
        "threads": args.threads,
        "single_process": single,
        f"ray_train_{args.workers}_workers": distributed,
        "seed_noise": {
            "single_process_test_ndcg@10": reference,
            "mean": statistics.fmean(reference),
            "pstdev": spread,
            "range": [min(reference), max(reference)],
        },
        "ndcg@10_difference": difference,
        "within_2_pstdev": abs(difference) <= 2 * spread,
        "within_seed_range": min(reference) <= distributed["test_ndcg@10"] <= max(reference),
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
