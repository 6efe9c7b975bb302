"""Benchmark: every registered sequence encoder on MovieLens 100K (all 100,000 interactions).

Protocol: leave-one-out split (last event = test, second-to-last = validation), histories of at most 50
items, full ranking over all 1,682 items (never sampled metrics), reported with the user's history items
excluded from the ranking (default, as in the SASRec / HSTU reference evaluators) and included (as
RecBole does). Early stopping on validation NDCG@10 (history excluded; with `--selection-protocol
seen_included`, history included, RecBole's protocol throughout, in a section of its own). Means over seeds.

    python benchmarks/encoders_ml100k.py            # 3 seeds, writes benchmarks/RESULTS.md
    python benchmarks/encoders_ml100k.py --quick    # 1 seed, capped epochs (a few minutes)
    python benchmarks/encoders_ml100k.py --models sasrec --selection-protocol seen_included

H2Rec quantises item text into semantic IDs, so it runs in a process of its own with `--item-text`; the
table is then the `--merge` of the processes' JSON lines:

    python benchmarks/encoders_ml100k.py --models h2rec --item-text movie_title,class --no-write > h2rec.json
    python benchmarks/encoders_ml100k.py --merge sasrec.json ... h2rec.json

Prints one JSON line with every number in the table. Under the table, each encoder's test NDCG@10 (history
excluded) per seed against SASRec's: the difference of the means and its standard error (Welch,
`sqrt(s_a^2 / n_a + s_b^2 / n_b)` with sample standard deviations over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from recsim_env import data, encoders  # noqa: E402
from recsim_env.encoders.trainer import (  # noqa: E402
    TrainerConfig,
    evaluate_full_ranking,
    leave_one_out_split,
    seed_everything,
    train,
)

DEFAULT_DATA = REPO / "../shared/data/ml-100k"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
PROTOCOL_TITLES = {
    "seen_excluded": "History items excluded from the ranking (default; SASRec / HSTU reference protocol)",
    "seen_included": "History items not excluded (RecBole protocol)",
}


def markers(selection: str) -> tuple[str, str]:
    """The comment lines around the section this benchmark writes for one selection protocol."""
    name = "encoders_ml100k" if selection == "seen_excluded" else f"encoders_ml100k:{selection}"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


MAX_LEN = 50

# Encoder settings on ML-100k (each module's docstring gives the paper's settings and why we differ).
MODELS: dict[str, dict] = {
    "sasrec": {"d_model": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.2},
    "hstu": {
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 1,
        "attention_dim": 64,
        "linear_dim": 64,
        "dropout": 0.3,  # 0.2 (the reference's): lower validation and test NDCG@10 on ML-100k (RESULTS.md)
    },
    "bert4rec": {"d_model": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.1, "mask_prob": 0.2},
    "gru4rec": {"d_model": 64, "dropout": 0.2},
    # SASRec's settings plus the reasoning steps (K = 2 and ERL: the authors' defaults; docs/rearec.md).
    "rearec": {
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 1,
        "dropout": 0.2,
        "reasoning_steps": 2,
        "method": "erl",
    },
    # SASRec's settings per tower plus the authors' MQSA-TED defaults (L = 3, alpha = 0.5, lambda_TED = 0.1,
    # tau = 0.1; docs/mqsa.md).
    "mqsa": {
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 1,
        "dropout": 0.2,
        "query_window": 3,
        "short_weight": 0.5,
        "distillation_weight": 0.1,
        "distillation_temperature": 0.1,
    },
    # SASRec's settings plus the intent contrastive terms (lambda = beta = 0.1, tau = 1, 512 intents: the
    # authors' ML-1M script; docs/icsrec.md).
    "icsrec": {
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 1,
        "dropout": 0.2,
        "cicl_weight": 0.1,
        "ficl_weight": 0.1,
        "temperature": 1.0,
        "n_intents": 512,
    },
    # SIGMAConfig's defaults: the released 2 layers with E = D, N = 8 (released: expand 2, d_state 32); 2 layers
    # over 1: validation NDCG@10 0.1248 against 0.1180 on seed 0 (RESULTS.md); docs/sigma.md.
    "sigma": {"d_model": 64, "dropout": 0.2, "n_layers": 2, "expand": 1, "d_state": 8},
    # SASRec's settings plus semantic IDs from RQ-KMeans of the item text (3 levels x 64 codes) and the
    # item- and sequence-level alignment off (lambda = 0: best validation NDCG@10 of 0 / 0.01 / 0.1 on seed 0,
    # benchmarks/RESULTS_h2rec.md); needs --item-text (docs/h2rec.md).
    "h2rec": {
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 1,
        "dropout": 0.2,
        "n_levels": 3,
        "codebook_size": 64,
        "item_alignment_weight": 0.0,
        "sequence_alignment_weight": 0.0,
        "alignment_temperature": 0.2,
    },
}
TRAINING: dict[str, dict] = {
    "sasrec": {"patience": 10},
    "hstu": {"patience": 20},
    "bert4rec": {"patience": 20, "epochs": 150},
    "gru4rec": {"patience": 10},
    "rearec": {"patience": 10},
    "mqsa": {"patience": 10},
    "icsrec": {"patience": 10},
    "sigma": {"patience": 10},
    "h2rec": {"patience": 10},
}
COLUMNS = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "r_precision")


def run_one(
    name: str,
    logs,
    seed: int,
    *,
    epochs: int,
    threads: int | None,
    progress: bool,
    window_stride: int | None = None,
    selection_protocol: str = "seen_excluded",
    item_text: np.ndarray | None = None,
) -> dict:
    seed_everything(seed)
    config = {"n_items": logs.n_items, "max_len": MAX_LEN, **MODELS[name]}
    if item_text is not None:  # the frozen text embeddings of every item (docs/item_text.md)
        config["item_text_dim"] = item_text.shape[1]
    encoder = encoders.build(name, config)
    if item_text is not None:
        encoder.set_item_text(torch.from_numpy(item_text))
    # learning rate: each encoder's own (`SequenceEncoder.learning_rate`; HSTU 1e-3) unless overridden
    settings = {"lr": type(encoder).learning_rate, **TRAINING[name], "window_stride": window_stride}
    epochs = min(epochs, settings.pop("epochs", epochs))
    config = TrainerConfig(
        epochs=epochs,
        seed=seed,
        num_threads=threads,
        progress=progress,
        selection_protocol=selection_protocol,
        **settings,
    )
    result = train(encoder, logs.sequences(), config)
    split = leave_one_out_split(logs.sequences(), max_len=MAX_LEN, pad_id=logs.n_items)
    start = time.perf_counter()
    evaluate_full_ranking(encoder, split.test, device=result.device)
    eval_seconds = time.perf_counter() - start
    return {**result.to_dict(), "eval_seconds": eval_seconds, "seed": seed}


def mean(runs: list[dict], path: tuple[str, ...]) -> float:
    values = []
    for run in runs:
        value = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.fmean(values)


def summarise(name: str, runs: list[dict]) -> dict:
    out: dict = {"model": name, "seeds": [r["seed"] for r in runs]}
    for split in ("valid", "test"):
        for protocol in ("seen_excluded", "seen_included"):
            out[f"{split}_{protocol}"] = {m: mean(runs, (split, protocol, m)) for m in COLUMNS}
    test_ndcg = [r["test"]["seen_excluded"]["ndcg@10"] for r in runs]
    out["test_ndcg@10_std"] = statistics.pstdev(test_ndcg)
    out["test_ndcg@10_per_seed"] = test_ndcg
    out["best_epoch"] = mean(runs, ("best_epoch",))
    out["epochs_run"] = mean(runs, ("epochs_run",))
    out["seconds_per_epoch"] = mean(runs, ("seconds_per_epoch",))
    out["seconds_to_best"] = mean(runs, ("seconds_to_best",))
    out["eval_seconds"] = mean(runs, ("eval_seconds",))
    out["peak_memory_mb"] = max(r["peak_memory_mb"] for r in runs)
    out["device"] = runs[0]["device"]
    return out


def against_baseline(summaries: list[dict], baseline: str = "sasrec", floor: float = 0.105) -> list[str]:
    """Markdown rows: each encoder's test NDCG@10 (history excluded) per seed, the difference of its mean from
    `baseline`'s, the difference's standard error (Welch) and the ratio, and whether every seed reaches
    `floor`. Empty without the baseline or with fewer than two seeds of it."""
    by_name = {s["model"]: s for s in summaries}
    base = by_name.get(baseline)
    if base is None or len(base["test_ndcg@10_per_seed"]) < 2:
        return []
    base_values = base["test_ndcg@10_per_seed"]
    lines = [
        f"**Test NDCG@10 (history excluded) against {baseline}** (difference of the means; SE = "
        "sqrt(s_a^2 / n_a + s_b^2 / n_b), sample standard deviations over seeds)",
        "",
        f"| model | per seed | mean | difference | SE | difference / SE | every seed >= {floor} |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        values = s["test_ndcg@10_per_seed"]
        row = f"| {s['model']} | {', '.join(f'{v:.4f}' for v in values)} | {statistics.fmean(values):.4f} |"
        if s["model"] == baseline:
            row += " | | |"
        elif len(values) < 2:
            row += f" {statistics.fmean(values) - statistics.fmean(base_values):+.4f} | | |"
        else:
            difference = statistics.fmean(values) - statistics.fmean(base_values)
            se = (
                statistics.variance(values) / len(values)
                + statistics.variance(base_values) / len(base_values)
            ) ** 0.5
            row += (
                f" {difference:+.4f} | {se:.4f} | {difference / se:+.1f} |"
                if se > 0
                else f" {difference:+.4f} | 0 | |"
            )
        lines.append(row + f" {'yes' if min(values) >= floor else 'no'} |")
    return lines + [""]


def markdown(
    summaries: list[dict],
    *,
    seeds: int | str,
    quick: bool,
    threads: int,
    seconds: float,
    note: str = "",
    selection: str = "seen_excluded",
) -> str:
    del seeds  # each model lists its own seeds
    seed_text = "; ".join(f"{s['model']} {','.join(map(str, s['seeds']))}" for s in summaries)
    start, end = markers(selection)
    title = "## Sequential encoders on MovieLens 100K (`benchmarks/encoders_ml100k.py`)"
    if selection != "seen_excluded":
        title = (
            "### The same, with early stopping on validation NDCG@10 with history items included "
            f"(`--selection-protocol {selection}`)"
        )
    lines = [
        start,
        title,
        "",
        f"All 100,000 interactions, leave-one-out, max length {MAX_LEN}, full ranking over all 1,682 items; "
        f"mean over seeds ({seed_text}){' (--quick: capped epochs)' if quick else ''}; device "
        f"{summaries[0]['device']}, torch threads {threads}; "
        f"{seconds / 60:.1f} min of training summed over runs. Epochs = best epoch / epochs run (early stopping on valid "
        f"NDCG@10, {PROTOCOL_TITLES[selection].split(' (')[0].lower()}); "
        "s/epoch = training time per epoch; to best = wall time (training + validation) until the best epoch; "
        "eval = full ranking of all 943 users; memory = peak RSS of the process (CPU) or peak CUDA allocation.",
        "",
    ]
    # The protocol the checkpoint was selected on comes first.
    for protocol, title in sorted(PROTOCOL_TITLES.items(), key=lambda kv: kv[0] != selection):
        lines += [
            f"**{title}**",
            "",
            "| model | split | HR@10 | NDCG@10 | MRR@10 | HR@20 | NDCG@20 | R-precision | epochs | s/epoch "
            "| to best (s) | eval (s) | memory (MiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in summaries:
            for split in ("valid", "test"):
                m = s[f"{split}_{protocol}"]
                run_columns = (
                    f"{s['best_epoch']:.0f} / {s['epochs_run']:.0f} | {s['seconds_per_epoch']:.2f} | "
                    f"{s['seconds_to_best']:.0f} | {s['eval_seconds']:.2f} | {s['peak_memory_mb']:.0f}"
                    if split == "test"
                    else "| | | |"
                )
                lines.append(
                    f"| {s['model'] if split == 'valid' else ''} | {split} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | "
                    f"{m['mrr@10']:.4f} | {m['hr@20']:.4f} | {m['ndcg@20']:.4f} | {m['r_precision']:.4f} | {run_columns} |"
                )
        lines.append("")
    if selection == "seen_excluded":
        lines += against_baseline(summaries)
    lines.append(
        "Reference points on the same split (seen excluded unless noted): the PyTorch port of the SASRec "
        "authors' code reaches test NDCG@10 0.088 / HR@10 0.173 with its BCE loss and 0.102 / 0.196 with "
        "full cross-entropy; RecBole 1.2.1's SASRec with default settings (seen included) 0.061 / 0.125."
    )
    if note:
        lines += ["", note]
    lines.append(end)
    return "\n".join(lines) + "\n"


def write_section(section: str, path: Path, selection: str = "seen_excluded") -> None:
    """Replace this benchmark's marked section of `path` (or append it), atomically."""
    start, end = markers(selection)
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    main_end = markers("seen_excluded")[1] + "\n"
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    elif selection != "seen_excluded" and main_end in text:  # right after the main section
        text = text.replace(main_end, main_end + "\n" + section, 1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ml-100k folder (RecBole atomic files)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (0..seeds-1)")
    parser.add_argument(
        "--seed-list", default=None, help="explicit comma-separated seeds (overrides --seeds)"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS)
    )
    parser.add_argument("--quick", action="store_true", help="1 seed and at most 15 epochs per model")
    parser.add_argument("--epochs", type=int, default=200, help="most epochs per run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--window-stride",
        type=int,
        default=None,
        help="training windows end every N events (default: the trainer's, max_len // 2)",
    )
    for flag, fields in (("--model-config", "encoder config"), ("--trainer-config", "TrainerConfig")):
        parser.add_argument(  # explorations: e.g. '{"d_model": 128}', '{"lr": 1e-3}'
            flag,
            type=json.loads,
            default={},
            metavar="JSON",
            help=f"{fields} fields over each model's settings",
        )
    parser.add_argument(
        "--selection-protocol",
        choices=list(PROTOCOL_TITLES),
        default="seen_excluded",
        help="validation ranking early stopping watches; seen_included (RecBole's) writes a section of its own",
    )
    parser.add_argument(
        "--item-text",
        default=None,
        metavar="COLUMNS",
        help="attach text embeddings of these item columns to every model (e.g. movie_title,class; h2rec needs it)",
    )
    parser.add_argument(
        "--item-text-cache", default=None, help="folder caching the text embeddings (default: item_text's)"
    )
    parser.add_argument("--results", default=str(RESULTS), help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the JSON line only")
    parser.add_argument("--note", default="", help="a sentence appended to the Markdown section")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="skip training: combine JSON lines printed by earlier runs (e.g. one process per model)",
    )
    args = parser.parse_args(argv)
    if (args.model_config or args.trainer_config) and not args.no_write:
        parser.error("--model-config / --trainer-config are for explorations: add --no-write")

    if args.merge:
        records = [json.loads(Path(p).read_text().strip().splitlines()[-1]) for p in args.merge]
        runs_by_model: dict[str, list[dict]] = {}
        for record in records:
            for name, runs in record["runs"].items():
                runs_by_model.setdefault(name, []).extend(runs)
        summaries = [summarise(name, runs) for name, runs in runs_by_model.items()]
        seed_counts = sorted({len(runs) for runs in runs_by_model.values()})
        seeds = seed_counts[0] if len(seed_counts) == 1 else "/".join(map(str, seed_counts))
        quick = any(r["quick"] for r in records)
        threads = records[0]["threads"]
        protocols = {r.get("selection_protocol", "seen_excluded") for r in records}
        if len(protocols) > 1:
            parser.error(f"--merge: the runs were selected under different protocols {sorted(protocols)}")
        args.selection_protocol = protocols.pop()
        seconds = sum(r["seconds"] for r in records)
        all_runs = runs_by_model
    else:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
        if "h2rec" in names and not args.item_text:
            parser.error("h2rec quantises item text embeddings into semantic IDs: add --item-text COLUMNS")
        seed_list = (
            [int(x) for x in args.seed_list.split(",")]
            if args.seed_list
            else list(range(1 if args.quick else args.seeds))
        )
        seeds = len(seed_list)
        for name in names:  # explorations: the same runs with some settings replaced
            MODELS[name] = {**MODELS[name], **args.model_config}
            TRAINING[name] = {**TRAINING[name], **args.trainer_config}
        quick = args.quick
        threads = args.threads or torch.get_num_threads()
        epochs = min(args.epochs, 15) if args.quick else args.epochs
        logs = data.load(args.data)
        text = None
        if args.item_text:
            from recsim_env.encoders.item_text import item_text_embeddings, item_texts

            text = item_text_embeddings(item_texts(logs, args.item_text), cache_dir=args.item_text_cache)
        start = time.perf_counter()
        summaries, all_runs = [], {}
        for name in tqdm(names, desc="models", unit="model"):
            runs = [
                run_one(
                    name,
                    logs,
                    seed,
                    epochs=epochs,
                    threads=args.threads,
                    progress=True,
                    window_stride=args.window_stride,
                    selection_protocol=args.selection_protocol,
                    item_text=text,
                )
                for seed in seed_list
            ]
            all_runs[name] = [{k: v for k, v in r.items() if k != "history"} for r in runs]
            summaries.append(summarise(name, runs))
        seconds = time.perf_counter() - start
    order = {name: i for i, name in enumerate(MODELS)}
    summaries.sort(key=lambda s: order[s["model"]])
    if not args.no_write:
        section = markdown(
            summaries,
            seeds=seeds,
            quick=quick,
            threads=threads,
            seconds=seconds,
            note=args.note,
            selection=args.selection_protocol,
        )
        write_section(section, Path(args.results), args.selection_protocol)
    record = {
        "benchmark": "encoders_ml100k",
        "seeds": seeds,
        "quick": quick,
        "threads": threads,
        "seconds": round(seconds, 1),
        "model_config": args.model_config,
        "trainer_config": args.trainer_config,
        "selection_protocol": args.selection_protocol,
        "item_text": args.item_text,
        "models": summaries,
        "runs": all_runs,
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
