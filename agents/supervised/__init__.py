"""Supervised: the practitioner's baseline, a click model trained on logs that recommends its argmax.

What a team deploys today: a sequential click model (SASRec, Kang & McAuley, ICDM 2018, by default;
any encoder of `recsim_env.encoders`) fitted to logged exposures, recommending the items of highest
predicted click probability. No returns, no long-term signal: the myopic reference offline RL agents
must beat.

Examples. One per logged row: the history h_t = the user's last L logged exposures before the row
(item ids and raw feedback, left-padded with the pad id N: the `SeqRec-v0` observation, built by the
shared `recsim_env.data.history_windows`), the item i_t shown, and its click c_t: the `click` column
of world logs, or `rating>=4` for MovieLens (`click_signal`, parsed as DT4IER's immediate signal).

Model. The encoder reads the window (feedback scaled by 1 / its 99th percentile on the training rows,
at most 1) and gives the state s = encoder(h) at the last position; the head scores an item with the
encoder's own (tied) item table E and a bias per item:

    logit p(click | h, i) = <s, E_i> + b_i

Loss. Binary cross-entropy of the logged item's click, L = -mean [c log sigma(z) + (1 - c) log(1 - sigma(z))],
over the training users' rows; a seeded `valid_fraction` of the users is held out whole, and early
stopping keeps the epoch of best validation AUC (or BCE, `selection`). bf16 autocast on CUDA;
bit-for-bit reproducible on CPU.

Policy. a(h) = the K items of highest sigma(<s, E_i> + b_i), items of the observed history excluded
(`exclude_seen`, as the greedy baseline). Deterministic; `action_distribution` is one-hot on the first.

Modules: `config` (`SupervisedConfig`), `model` (`ClickModel`), `losses` (`click_loss`, `click_auc`),
`train` (`click_examples`, `split_users`, `fit`, `train`), `policy` (`SupervisedPolicy`).

    policy, info = train(SupervisedConfig(), log_world("uniform", steps=50_000, seed=0))
    policy.click_probabilities(obs); policy.act(obs); policy.save("runs/supervised")
"""

from agents.supervised.config import KIND, SupervisedConfig
from agents.supervised.losses import click_auc, click_loss
from agents.supervised.model import ClickModel
from agents.supervised.policy import SupervisedPolicy
from agents.supervised.train import ClickExamples, click_examples, fit, split_users, train

__all__ = [
    "KIND",
    "ClickExamples",
    "ClickModel",
    "SupervisedConfig",
    "SupervisedPolicy",
    "click_auc",
    "click_examples",
    "click_loss",
    "fit",
    "split_users",
    "train",
]
