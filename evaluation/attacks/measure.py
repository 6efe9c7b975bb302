"""What a poisoning attack does to an encoder, and how much the defence restores.

Target exposure (the measure of LoRec's and Huang et al.'s experiments): for each target item, over the
real users whose sequence does not hold it, rank all N items from the user's test history (every event
but the last) with the history's items removed, and count a hit when the target is in the top 10;
HR@10 and NDCG@10 (`1 / log2(rank + 2)` for a 0-based rank inside the top 10) are averaged over those
users, then over the targets. Recommendation quality is the trainer's test NDCG@10 on the real users'
held-out last events (history items excluded). Clean, poisoned and defended encoders are trained with
the same seed and settings; each restores its best epoch on the real users' validation NDCG@10 (the
experimenter's selection, identical for the three runs; the defence itself never sees who is fake).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluation.attacks.defence import DefenceConfig, train_defended
from evaluation.attacks.poisoning import PoisonedLogs
from recsim_env.data import LoggedInteractions

GAIN_FLOOR = 1e-3
"""HR@10 below this counts as this much in the poisoned / clean gain ratio (a target no clean user sees
in a top 10 would make the ratio infinite)."""


def target_exposure(
    encoder,
    data: LoggedInteractions,
    targets: np.ndarray,
    *,
    users: np.ndarray,
    k: int = 10,
    batch_size: int = 512,
) -> dict[str, Any]:
    """HR@k and NDCG@k of each target over `users` (indices of `data`) who never interacted with it.

    Returns:
        `{"hr": mean over targets, "ndcg": ..., "per_target": [{"item": index, "hr", "ndcg", "users"}]}`.
    """
    import torch

    from recsim_env.encoders.metrics import target_ranks
    from recsim_env.encoders.trainer import left_pad, seen_mask

    seqs = data.sequences()
    lengths = seqs.lengths()
    users = np.asarray(users, dtype=np.int64)
    users = users[lengths[users] >= 3]
    history = lengths[users] - 1
    cfg = encoder.config
    items, times, feedback = left_pad(seqs, users, history, max_len=cfg.max_len, pad_id=cfg.pad_id)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    scores = []
    with torch.no_grad():
        for lo in range(0, len(users), batch_size):
            sl = slice(lo, lo + batch_size)
            state = encoder.user_state(
                torch.from_numpy(items[sl]).to(device),
                timestamps=torch.from_numpy(times[sl]).to(device),
                feedback=torch.from_numpy(feedback[sl]).to(device) if cfg.feedback_dim else None,
            )
            scores.append(encoder.score(state.float()).float().cpu())
    encoder.train(was_training)
    scores_t = torch.cat(scores)  # [U, N]
    starts = seqs.offsets[users]
    seen_items = np.concatenate([seqs.item_ids[s : s + n] for s, n in zip(starts, history, strict=True)])
    seen = seen_mask(np.r_[0, np.cumsum(history)], seen_items, cfg.n_items, torch.device("cpu"))
    whole = [set(seqs.item_ids[seqs.offsets[u] : seqs.offsets[u + 1]].tolist()) for u in users]
    per_target = []
    for target in np.asarray(targets, dtype=np.int64).tolist():
        fresh = np.array([target not in w for w in whole])
        rows = torch.from_numpy(np.flatnonzero(fresh))
        ranks = target_ranks(scores_t[rows], torch.full((len(rows),), target), excluded=seen[rows])
        hit = (ranks < k).double()
        per_target.append(
            {
                "item": target,
                "hr": float(hit.mean()) if len(rows) else 0.0,
                "ndcg": float((hit / torch.log2(ranks.double() + 2)).mean()) if len(rows) else 0.0,
                "users": int(len(rows)),
            }
        )
    return {
        "hr": float(np.mean([t["hr"] for t in per_target])),
        "ndcg": float(np.mean([t["ndcg"] for t in per_target])),
        "per_target": per_target,
    }


def detection_auc(scores: np.ndarray, fake: np.ndarray) -> float:
    """Area under the ROC curve of `scores` ranking the `fake` users (bool) above the real ones (ties half)."""
    fake = np.asarray(fake, dtype=bool)
    pos, neg = scores[fake], scores[~fake]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def per_update(defended, fake: np.ndarray, scored: np.ndarray) -> list[dict[str, Any]]:
    """Per weight update of a `DefendedTraining`, read with the experimenter's `fake` `[n_users]` bool list
    (the defence never sees it): the fake users' probabilities (sorted), quantiles of those of the real
    users among the `scored` ones (`[n_users]` bool: users with events), and how many fake and real
    users the update flagged."""
    quantiles = (0.5, 0.9, 0.95, 0.99)
    rows = []
    for scores, flagged, step in zip(
        defended.score_history, defended.flagged_history, defended.trace, strict=True
    ):
        real = scores[~fake & scored]
        rows.append(
            {
                "epoch": step["epoch"],
                "threshold": step["threshold"],
                "fake_scores": np.round(np.sort(scores[fake]), 4).tolist(),
                "real_quantiles": {
                    str(q): round(float(v), 4)
                    for q, v in zip(quantiles, np.quantile(real, quantiles), strict=True)
                },
                "flagged_fake": int(fake[flagged].sum()),
                "flagged_real": int((~fake[flagged]).sum()),
            }
        )
    return rows


def train_clean(
    clean: LoggedInteractions, *, model: str, model_config: Mapping[str, Any] | None, trainer_config
):
    """`(encoder, TrainResult)` of `model` trained on the clean logs (`poisoning_experiment`'s clean run)."""
    from recsim_env import encoders
    from recsim_env.encoders.trainer import seed_everything, train

    seed_everything(trainer_config.seed)
    encoder = encoders.build(model, {"n_items": clean.n_items, "max_len": 50, **dict(model_config or {})})
    return encoder, train(encoder, clean.sequences(), trainer_config)


def poisoning_experiment(
    clean: LoggedInteractions,
    poisoned: PoisonedLogs,
    *,
    model: str = "sasrec",
    model_config: Mapping[str, Any] | None = None,
    trainer_config=None,
    defence_config: DefenceConfig | None = None,
    defend: bool = True,
    clean_run: tuple | None = None,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Train `model` on the clean logs, the poisoned logs and (when `defend`) the poisoned logs with LoRec's
    defence, all with the same seed and settings, and measure target exposure and recommendation quality.

    Returns:
        A JSON-able dict with `target_hr10_clean`, `target_hr10_poisoned`, `target_hr10_defended`,
        `target_ndcg10_*`, `ndcg10_clean`, `ndcg10_poisoned`, `ndcg10_defended`, the gains, the
        defence's detection AUC and weights summary, and per-run training summaries; and the defence's
        `[n_users]` weights (None without `defend`).

    `clean_run` is an `(encoder, TrainResult)` already trained on `clean` with these settings (`train_clean`),
    for comparing several attacks with one clean model.
    """
    from recsim_env import encoders
    from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train

    trainer_config = trainer_config or TrainerConfig(progress=False)
    defence_config = defence_config or DefenceConfig()
    base = {"n_items": clean.n_items, "max_len": 50, **dict(model_config or {})}

    def build():
        return encoders.build(model, dict(base))

    real = poisoned.real_users
    targets = poisoned.target_items
    out: dict[str, Any] = {"model": model, "targets": targets.tolist(), "n_fake": poisoned.n_fake}

    def summary(result) -> dict[str, Any]:
        return {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "seconds_per_epoch": round(result.seconds_per_epoch, 3),
            "test": result.test["seen_excluded"],
        }

    runs = {}
    weights = None
    runs["clean"] = clean_run or train_clean(
        clean, model=model, model_config=model_config, trainer_config=trainer_config
    )
    seed_everything(trainer_config.seed)
    encoder = build()
    runs["poisoned"] = (encoder, train(encoder, poisoned.data.sequences(), trainer_config, eval_users=real))
    if defend:
        encoder, defended = train_defended(
            poisoned.data, build, trainer_config, defence_config, eval_users=real
        )
        runs["defended"] = (encoder, defended.result)
        weights = defended.weights
        out["defence"] = {
            "detection_auc": detection_auc(defended.scores, poisoned.fake_users),
            "fake_weight_mean": float(weights[poisoned.fake_users].mean()),
            "real_weight_mean": float(weights[~poisoned.fake_users].mean()),
            "real_downweighted": int((weights[~poisoned.fake_users] < 0.5).sum()),
            "fake_downweighted": int((weights[poisoned.fake_users] < 0.5).sum()),
            "trace": defended.trace,
            "per_update": per_update(defended, poisoned.fake_users, poisoned.data.sequences().lengths() > 0),
            "fake_flag_counts": defended.flag_counts[poisoned.fake_users].tolist(),
            "real_flagged_4_or_more": int((defended.flag_counts[~poisoned.fake_users] >= 4).sum()),
            "calibration": summary(defended.calibration),
            "config": dataclasses.asdict(defence_config),
        }
    for name, (encoder, result) in runs.items():
        data = clean if name == "clean" else poisoned.data
        exposure = target_exposure(encoder, data, targets, users=np.arange(clean.n_users))
        out[f"target_hr10_{name}"] = exposure["hr"]
        out[f"target_ndcg10_{name}"] = exposure["ndcg"]
        out[f"ndcg10_{name}"] = result.test["seen_excluded"]["ndcg@10"]
        out[f"per_target_{name}"] = exposure["per_target"]
        out[f"train_{name}"] = summary(result)
    out["target_hr10_gain_poisoned"] = out["target_hr10_poisoned"] / max(out["target_hr10_clean"], GAIN_FLOOR)
    if defend:
        gain = out["target_hr10_poisoned"] - out["target_hr10_clean"]
        left = out["target_hr10_defended"] - out["target_hr10_clean"]
        out["target_hr10_gain_defended"] = out["target_hr10_defended"] / max(
            out["target_hr10_clean"], GAIN_FLOOR
        )
        out["gain_removed"] = 1.0 - left / gain if gain > 0 else float("nan")
        out["ndcg10_defended_vs_clean"] = out["ndcg10_defended"] / out["ndcg10_clean"] - 1.0
    return out, weights
