"""The poisoning and defence reports: report.json, report.md and PNG plots, as bytes to write together."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from evaluation.attacks.poisoning import PoisonedLogs
from evaluation.report_plots import figure_png
from recsim_env.data import LoggedInteractions


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _json_bytes(payload: dict) -> bytes:
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            return clean(value.item())
        return value

    return (json.dumps(clean(payload), indent=2, sort_keys=True) + "\n").encode("utf-8")


def poison_summary(
    clean: LoggedInteractions, poisoned: PoisonedLogs, config: dict[str, Any]
) -> dict[str, Any]:
    """What the attack injected: fake users and events, and each target's interaction count before and after."""
    before = np.bincount(clean.frame["item_id"].to_numpy(), minlength=clean.n_items)
    after = np.bincount(poisoned.data.frame["item_id"].to_numpy(), minlength=clean.n_items)
    fake_rows = poisoned.data.frame["user_id"].to_numpy() >= clean.n_users
    tokens = clean.item_ids.to_token(poisoned.target_items)
    return {
        "kind": config["kind"],
        "fraction": config["fraction"],
        "n_real_users": clean.n_users,
        "n_fake_users": poisoned.n_fake,
        "fake_events": int(fake_rows.sum()),
        "targets": [
            {
                "item": t.item() if isinstance(t, np.generic) else t,
                "index": int(i),
                "count_clean": int(before[i]),
                "count_poisoned": int(after[i]),
            }
            for t, i in zip(tokens, poisoned.target_items, strict=True)
        ],
        "config": config,
    }


def poison_files(
    clean: LoggedInteractions, poisoned: PoisonedLogs, summary: dict[str, Any]
) -> dict[str, bytes]:
    """report.json, report.md and two plots of a `seqrec attack poison` run."""
    plt = _figure()
    seqs = poisoned.data.sequences()
    lengths = seqs.lengths()
    counts = np.bincount(clean.frame["item_id"].to_numpy(), minlength=clean.n_items)
    log_pop = np.log1p(counts)[seqs.item_ids]
    users = np.repeat(np.arange(poisoned.data.n_users), lengths)
    mean_pop = np.bincount(users, weights=log_pop, minlength=poisoned.data.n_users) / np.maximum(lengths, 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, values, label in (
        (axes[0], lengths, "events per user"),
        (axes[1], mean_pop, "mean log(1 + item count)"),
    ):
        bins = np.histogram_bin_edges(values, bins=30)  # shared, so the two densities compare
        ax.hist(values[~poisoned.fake_users], bins=bins, alpha=0.6, density=True, label="real")
        ax.hist(values[poisoned.fake_users], bins=bins, alpha=0.6, density=True, label="fake")
        ax.set_xlabel(label)
        ax.legend()
    fig.tight_layout()
    profile = figure_png(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = [str(t["item"]) for t in summary["targets"]]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [t["count_clean"] for t in summary["targets"]], 0.4, label="clean")
    ax.bar(x + 0.2, [t["count_poisoned"] for t in summary["targets"]], 0.4, label="poisoned")
    ax.set_xticks(x, names)
    ax.set_xlabel("target item")
    ax.set_ylabel("interactions")
    ax.legend()
    fig.tight_layout()
    targets = figure_png(fig)
    plt.close(fig)
    rows = "\n".join(
        f"| {t['item']} | {t['count_clean']} | {t['count_poisoned']} |" for t in summary["targets"]
    )
    markdown = f"""# Poisoning report: {summary["kind"]} attack

{summary["n_fake_users"]} fake users ({summary["fraction"]:.2%} of {summary["n_real_users"]} real users) with
{summary["fake_events"]} events were appended to `{clean.name}` and written to `poisoned.parquet`;
`fake_users.json` names them (the attacker's knowledge: never give it to a defence).

| target | interactions, clean | interactions, poisoned |
|---|---|---|
{rows}

![target interactions](targets.png)

![real and fake users](profile.png)

Settings: `{json.dumps(summary["config"], sort_keys=True)}`
"""
    return {
        "report.json": _json_bytes(summary),
        "report.md": markdown.encode("utf-8"),
        "targets.png": targets,
        "profile.png": profile,
    }


def defence_files(result: dict[str, Any], weights: np.ndarray, fake: np.ndarray) -> dict[str, bytes]:
    """report.json, report.md and two plots of a `seqrec attack defend` run (`poisoning_experiment`'s dict)."""
    plt = _figure()
    runs = [r for r in ("clean", "poisoned", "defended") if f"target_hr10_{r}" in result]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].bar(runs, [result[f"target_hr10_{r}"] for r in runs], color=["C0", "C3", "C2"][: len(runs)])
    axes[0].set_ylabel("target HR@10")
    axes[1].bar(runs, [result[f"ndcg10_{r}"] for r in runs], color=["C0", "C3", "C2"][: len(runs)])
    axes[1].set_ylabel("test NDCG@10 (real users)")
    fig.tight_layout()
    bars = figure_png(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(0.0, max(1.05, float(weights.max()) + 0.05), 30)
    ax.hist(weights[~fake], bins=bins, alpha=0.6, label="real")
    ax.hist(weights[fake], bins=bins, alpha=0.6, label="fake")
    ax.set_yscale("log")
    ax.set_xlabel("training weight after the defence")
    ax.legend()
    fig.tight_layout()
    hist = figure_png(fig)
    plt.close(fig)
    table = "\n".join(
        f"| {r} | {result[f'target_hr10_{r}']:.4f} | {result[f'target_ndcg10_{r}']:.4f} | {result[f'ndcg10_{r}']:.4f} |"
        for r in runs
    )
    defence = result.get("defence", {})
    markdown = f"""# Poisoning and defence report ({result["model"]})

| model | target HR@10 | target NDCG@10 | test NDCG@10 (real users) |
|---|---|---|---|
{table}

Target HR@10 poisoned / clean: {result["target_hr10_gain_poisoned"]:.1f}x (clean HR@10 floored at 0.001).
Share of the attack's HR@10 gain the defence removed: {result.get("gain_removed", float("nan")):.1%}.
Defended NDCG@10 against the clean model's: {result.get("ndcg10_defended_vs_clean", float("nan")):+.1%}.

Defence: detection AUC {defence.get("detection_auc", float("nan")):.3f} (the calibrator's last scores, fake
users against real ones); fake users down-weighted (weight < 0.5) {defence.get("fake_downweighted", 0)} of
{result["n_fake"]}; real users down-weighted {defence.get("real_downweighted", 0)}.

![target exposure and quality](exposure.png)

![weights](weights.png)
"""
    return {
        "report.json": _json_bytes(result),
        "report.md": markdown.encode("utf-8"),
        "exposure.png": bars,
        "weights.png": hist,
    }
