"""LoRec's defence against poisoning: a calibrator that reweights users in training by how likely they are
to be fake (Zhang et al., "LoRec: Combating Poisons with Large Language Models for Robust Sequential
Recommendation", SIGIR 2024; official code github.com/Kaike-Zhang/LoRec).

The defender sees the logs, never which users are fake. As in LoRec, it simulates attacks of its own
(`simulated_fraction` fake users of every attack family, with targets it draws at random) and trains a
calibrator to tell those simulated fakes (label 1) from every logged user (label 0, the unknown fakes
among them). The calibrator scores each logged user; LoRec's weight update (its `update_weight` and
`get_weight`) then lowers the training weight of the flagged users F:

    a_u <- a_u - 1 for the flagged users F (only when |F| < n / 3), a_v <- a_v + |F| / (n - |F|) for the others
    w_u = sigmoid(a_u) / sigmoid(a_0), and w_u = 1 when 0.5 < w_u < 1,        a_0 = `initial_weight`

so a user loses weight only after being flagged at least four times (from a_0 = 3). LoRec flags the users
scored above the mean score, which flags a share of real users whatever the calibrator's confidence (about
9% of MovieLens users at 1% fakes, benchmarks/RESULTS_poison.md); by default this defence flags the users
whose calibrated probability of being fake is above `flag_threshold`, at most the `max_flagged_fraction`
highest scored (the defender's bound on the fake share it expects); `flag_threshold=None` restores LoRec's
rule. The calibrator's
loss is LoRec's (its `custom_loss`): binary cross-entropy plus `entropy_weight` times the entropy of the
predictions on label-0 users, which lets unlabelled users that look like the simulated fakes move away
from 0 at a low cost.

LoRec's calibrator (LCT) is a transformer over the recommender's embeddings of the user's items, aligned
with an LLM's embedding of the sequence's titles. This one is a small MLP over per-user features
(`user_features`): sequence statistics (length, item popularity profile, repetition, time gaps,
feedback), the coherence of the user's items under the recommender's current item embeddings, and,
optionally, the same coherence under hashed character-trigram embeddings of the item table's text
(`text_embeddings`, a tiny packaged encoder in place of the LLM). LoRec trains the calibrator and the
recommender in alternation (`calibrate_while_training`, through the trainer's `reweight` hook);
`train_defended` then retrains the recommender from scratch with the final weights, so the defended
model is trained exactly as the clean and poisoned ones except for the weights.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluation.attacks.poisoning import ATTACK_KINDS, PoisonConfig, poison
from recsim_env.checks import check_bool, check_config_fields, check_integer, check_real
from recsim_env.data import LoggedInteractions
from recsim_env.errors import ArgumentError


@dataclass(frozen=True, kw_only=True)
class DefenceConfig:
    """The calibrator, the defender's simulated attacks and LoRec's weight schedule."""

    simulated_fraction: float = 0.2
    """The defender's own simulated fake users, as a fraction of the logged users (split over the kinds)."""
    simulated_kinds: tuple = ATTACK_KINDS
    """Attack families the defender simulates."""
    simulated_target_shares: tuple = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    """Shares of target events per simulated fake user (one simulation per kind and share): a range, as
    the defender does not know the attacker's share."""
    simulated_target_counts: tuple = (1, 2, 3)
    """Targets promoted per simulation, cycled over the simulations (an attack may promote several items
    at once, which spreads its target events over them)."""
    flag_threshold: float | None = 0.5
    """A user is flagged when the calibrator's probability that it is fake is above this; None: LoRec's rule
    (above the mean score)."""
    max_flagged_fraction: float = 0.05
    """With `flag_threshold`, at most this fraction of the scored users (the highest scored) is flagged per
    update: the defender's bound on the share of fake users it expects."""
    use_text: bool = False
    """Add coherence features from hashed character-trigram embeddings of the item table's text."""
    text_dim: int = 256
    """Width of the hashed text embeddings."""
    simulated_min: int = 5
    """At least this many simulated fake users per attack kind and target share."""
    folds: int = 5
    """Each logged user is scored by a calibrator fitted without it (cross-fitting over this many folds),
    so a flexible calibrator cannot memorise the unknown fakes among its label-0 users."""
    hidden: int = 8
    """Hidden width of the calibrator MLP (narrow: a wide one carves the unknown fakes among its label-0
    users out of the simulated ones, and scores them low)."""
    steps: int = 300
    """Full-batch Adam steps per calibrator fit."""
    calibrator_lr: float = 0.01
    """Calibrator learning rate (LoRec's)."""
    entropy_weight: float = 0.5
    """LoRec's lambda_1: weight of the entropy regulariser on label-0 users."""
    initial_weight: float = 3.0
    """LoRec's initial weight coefficient a_0 of every user."""
    start_epoch: int = 2
    """First recommender epoch after which the calibrator updates the weights."""
    update_every: int = 2
    """Recommender epochs between weight updates."""
    updates: int = 6
    """Weight updates in all (at least 4: LoRec lowers a weight after four flags)."""
    retrain: bool = True
    """Retrain the recommender from scratch with the final weights (else keep the calibration run's)."""
    seed: int = 0
    """Seed of the simulated attacks and the calibrator."""

    def __post_init__(self) -> None:
        check_config_fields(
            self, ("simulated_fraction",), check_real, low=0.0, high=1.0, low_open=True, high_open=True
        )
        check_config_fields(self, ("calibrator_lr",), check_real, low=0.0, low_open=True)
        check_config_fields(self, ("flag_threshold",), check_real, low=0.0, high=1.0, optional=True)
        check_config_fields(
            self, ("max_flagged_fraction",), check_real, low=0.0, high=1.0, low_open=True, high_open=True
        )
        check_config_fields(self, ("entropy_weight", "initial_weight"), check_real, low=0.0)
        check_config_fields(
            self,
            ("text_dim", "hidden", "steps", "start_epoch", "update_every", "simulated_min"),
            check_integer,
            low=1,
        )
        check_config_fields(self, ("folds",), check_integer, low=2)
        check_config_fields(self, ("updates",), check_integer, low=1)
        check_config_fields(self, ("seed",), check_integer, low=0)
        check_config_fields(self, ("use_text", "retrain"), check_bool)
        kinds = tuple(self.simulated_kinds)
        if not kinds or any(k not in ATTACK_KINDS for k in kinds):
            raise ArgumentError(
                f"DefenceConfig.simulated_kinds must be a non-empty subset of {list(ATTACK_KINDS)}"
            )
        shares = tuple(self.simulated_target_shares)
        if not shares or any(not isinstance(s, int | float) or not 0.0 < s <= 1.0 for s in shares):
            raise ArgumentError("DefenceConfig.simulated_target_shares must be numbers in (0, 1]")
        counts = tuple(self.simulated_target_counts)
        if not counts or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in counts):
            raise ArgumentError("DefenceConfig.simulated_target_counts must be integers >= 1")
        object.__setattr__(self, "simulated_target_counts", counts)
        object.__setattr__(self, "simulated_kinds", kinds)
        object.__setattr__(self, "simulated_target_shares", shares)

    @property
    def calibration_epochs(self) -> int:
        """Recommender epochs of the calibration run: up to the last weight update."""
        return self.start_epoch + self.update_every * (self.updates - 1)


# -- features ----------------------------------------------------------------------------------------


def text_embeddings(items, n_items: int, dim: int) -> np.ndarray:
    """`[n_items, dim]` L2-normalised signed hashed bags of character trigrams of each item's text (all
    string columns of the item table, joined); zero rows for items without text.

    The hash is CRC-32, so the embeddings are the same in every process (Python's `hash` is salted).
    """
    table = np.zeros((n_items, dim), dtype=np.float32)
    if items is None:
        return table
    text_cols = [
        c for c in items.columns if items[c].dtype == object or pd.api.types.is_string_dtype(items[c])
    ]
    for row, values in enumerate(items[text_cols].itertuples(index=False)):
        if row >= n_items:
            break
        text = " ".join(v for v in values if isinstance(v, str) and v.strip()).lower()
        if not text:
            continue
        padded = f"  {text} "
        for i in range(len(padded) - 2):
            h = zlib.crc32(padded[i : i + 3].encode("utf-8"))
            table[row, h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    return np.divide(table, norms, out=np.zeros_like(table), where=norms > 0)


def _coherence(offsets: np.ndarray, items: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`[U, 2]` per user: mean cosine of consecutive items and mean cosine of each item to the user's mean
    item, under the item embeddings `table` `[N, D]`."""
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    vectors = unit[items]  # [S, D]
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    same_user = np.r_[False, users[1:] == users[:-1]]
    consecutive = np.r_[0.0, np.einsum("sd,sd->s", vectors[1:], vectors[:-1])]
    n_pairs = np.maximum(np.bincount(users, weights=same_user, minlength=len(offsets) - 1), 1)
    step = np.bincount(users, weights=consecutive * same_user, minlength=len(offsets) - 1) / n_pairs
    sums = np.add.reduceat(vectors, offsets[:-1], axis=0) if len(vectors) else np.zeros((0, table.shape[1]))
    centre = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    to_centre = np.bincount(
        users, weights=np.einsum("sd,sd->s", vectors, centre[users]), minlength=len(offsets) - 1
    )
    return np.stack([step, to_centre / np.maximum(np.diff(offsets), 1)], axis=1)


def user_features(
    offsets: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    feedback: np.ndarray,
    *,
    popularity: np.ndarray,
    item_tables: tuple[np.ndarray, ...] = (),
) -> np.ndarray:
    """`[U, F]` float64 features of users with events (CSR `offsets` `[U + 1]`, `items`, `timestamps`,
    `feedback` `[S, F']`).

    Columns: log length; mean and std of the log popularity of the user's items (`popularity` `[N]`,
    event counts in the logs); share of events on the 5% most popular items; repetition (1 - distinct /
    length) and the largest share of one item; share of zero time gaps and the log median gap; the mean
    of each feedback column; then the two coherence columns (`_coherence`) of each of `item_tables`.
    """
    n_users = len(offsets) - 1
    lengths = np.diff(offsets).astype(np.float64)
    users = np.repeat(np.arange(n_users), np.diff(offsets))
    log_pop = np.log1p(popularity.astype(np.float64))[items]
    mean_pop = np.bincount(users, weights=log_pop, minlength=n_users) / lengths
    var_pop = np.bincount(users, weights=log_pop**2, minlength=n_users) / lengths - mean_pop**2
    head = popularity >= np.quantile(popularity, 0.95)
    head_share = np.bincount(users, weights=head[items].astype(np.float64), minlength=n_users) / lengths
    base = int(items.max()) + 1 if len(items) else 1
    unique_pairs, pair_counts = np.unique(users.astype(np.int64) * base + items, return_counts=True)
    pair_user = unique_pairs // base  # each (user, item) pair once, with its count
    distinct = np.bincount(pair_user, minlength=n_users).astype(np.float64)
    top_share = np.zeros(n_users)
    np.maximum.at(top_share, pair_user, pair_counts.astype(np.float64))
    same_user = np.r_[False, users[1:] == users[:-1]]
    gaps = np.r_[0.0, np.diff(timestamps)]
    n_gaps = np.maximum(np.bincount(users, weights=same_user, minlength=n_users), 1)
    zero_gaps = np.bincount(users, weights=same_user & (gaps <= 0), minlength=n_users) / n_gaps
    median_gap = np.array(
        [
            np.median(gaps[lo + 1 : hi]) if hi - lo > 1 else 0.0
            for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)
        ]
    )
    columns = [
        np.log(lengths),
        mean_pop,
        np.sqrt(np.maximum(var_pop, 0.0)),
        head_share,
        1.0 - distinct / lengths,
        top_share / lengths,
        zero_gaps,
        np.log1p(np.maximum(median_gap, 0.0)),
    ]
    for j in range(feedback.shape[1] if feedback.ndim == 2 else 0):
        columns.append(
            np.bincount(users, weights=feedback[:, j].astype(np.float64), minlength=n_users) / lengths
        )
    features = np.stack(columns, axis=1)
    for table in item_tables:
        features = np.concatenate([features, _coherence(offsets, items, table)], axis=1)
    return features


# -- the simulated attacks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedFakes:
    """The defender's own fake users, in CSR layout over the logs' catalogue."""

    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    feedback: np.ndarray
    groups: np.ndarray
    """`[n_fakes]` int64 the simulation (attack kind and target share) each fake user comes from."""

    def group(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """CSR `(offsets, items, timestamps, feedback)` of the fake users of simulation `g`."""
        users = np.flatnonzero(self.groups == g)
        lo, hi = int(self.offsets[users[0]]), int(self.offsets[users[-1] + 1])
        return (
            self.offsets[users[0] : users[-1] + 2] - lo,
            self.items[lo:hi],
            self.timestamps[lo:hi],
            self.feedback[lo:hi],
        )


def simulate_fakes(data: LoggedInteractions, config: DefenceConfig) -> SimulatedFakes:
    """The defender's simulated fake users: one `poison` of `data` per attack kind and target share of
    `config`, each with `simulated_fraction / (kinds x shares)` of the users (at least `simulated_min`) and
    targets of its own, `simulated_target_counts[i % len]` for simulation i, drawn uniformly from the items
    the logs hold."""
    rng = np.random.default_rng(config.seed)
    combos = [(k, s) for k in config.simulated_kinds for s in config.simulated_target_shares]
    fraction = max(config.simulated_fraction / len(combos), (config.simulated_min - 0.5) / data.n_users)
    fraction = min(fraction, 0.999)
    consumed = np.unique(data.frame["item_id"].to_numpy())
    parts = []
    for i, (kind, share) in enumerate(combos):
        n_targets = min(
            config.simulated_target_counts[i % len(config.simulated_target_counts)], len(consumed)
        )
        chosen = rng.choice(consumed, size=n_targets, replace=False)
        cfg = PoisonConfig(
            kind=kind,
            fraction=fraction,
            targets=tuple(data.item_ids.to_token(chosen).tolist()),
            seed=config.seed * 1000 + i,
            target_share=share,
        )
        poisoned = poison(data, cfg)
        seqs = poisoned.data.sequences()
        lo = int(seqs.offsets[data.n_users])
        parts.append(
            (seqs.lengths()[data.n_users :], seqs.item_ids[lo:], seqs.timestamps[lo:], seqs.feedback[lo:])
        )
    lengths = np.concatenate([p[0] for p in parts])
    return SimulatedFakes(
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        items=np.concatenate([p[1] for p in parts]),
        timestamps=np.concatenate([p[2] for p in parts]),
        feedback=np.concatenate([p[3] for p in parts]),
        groups=np.repeat(np.arange(len(parts)), [len(p[0]) for p in parts]).astype(np.int64),
    )


# -- the calibrator ----------------------------------------------------------------------------------


def calibrator_loss(logits, labels, entropy_weight: float):
    """LoRec's calibrator loss (its `custom_loss`) from logits `z` (`p = sigmoid(z)`): mean over users of
    the binary cross-entropy plus `entropy_weight` times the entropy `H(p)` of the prediction on label-0
    users, with `H(p) = p softplus(-z) + (1 - p) softplus(z)` (the stable form)."""
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p = logits.sigmoid()
    entropy = p * F.softplus(-logits) + (1 - p) * F.softplus(logits)
    return (bce + entropy_weight * entropy * (labels == 0)).mean()


def fit_and_score(logged: np.ndarray, simulated: np.ndarray, config: DefenceConfig, seed: int) -> np.ndarray:
    """`[U]` the calibrator's probability that each `logged` user is fake, out of fold: the logged users
    are split into `config.folds` folds, and each fold is scored by an MLP fitted on the `simulated` fakes
    (label 1) against the logged users of the other folds (label 0).

    Features are standardised over both groups and clipped to [-5, 5] (a feature nearly constant among
    logged users, such as repetition in MovieLens, would otherwise reach thousands of deviations). Runs on
    the CPU with its own seed; the global torch RNG is left as it was.
    """
    import torch

    from recsim_env.encoders.trainer import torch_threads

    both = np.concatenate([logged, simulated])
    standard = np.clip((both - both.mean(axis=0)) / (both.std(axis=0) + 1e-9), -5.0, 5.0)
    x_logged = torch.from_numpy(standard[: len(logged)]).float()
    x_fake = torch.from_numpy(standard[len(logged) :]).float()
    fold = np.random.default_rng(seed).permutation(len(logged)) % config.folds
    scores = np.zeros(len(logged))
    with torch.random.fork_rng(devices=[]), torch_threads(1):  # tiny matrices: one thread is fastest
        torch.manual_seed(seed)
        for k in range(config.folds):
            train_rows = torch.from_numpy(np.flatnonzero(fold != k))
            x = torch.cat([x_logged[train_rows], x_fake])
            y = torch.cat([torch.zeros(len(train_rows)), torch.ones(len(x_fake))])
            model = torch.nn.Sequential(
                torch.nn.Linear(x.shape[1], config.hidden), torch.nn.GELU(), torch.nn.Linear(config.hidden, 1)
            )
            optimiser = torch.optim.Adam(model.parameters(), lr=config.calibrator_lr, weight_decay=5e-4)
            for _ in range(config.steps):
                optimiser.zero_grad()
                loss = calibrator_loss(model(x).squeeze(1), y, config.entropy_weight)
                loss.backward()
                optimiser.step()
            held_out = np.flatnonzero(fold == k)
            with torch.no_grad():
                scores[held_out] = torch.sigmoid(model(x_logged[held_out])).squeeze(1).double().numpy()
    return scores


@dataclass
class LoRecWeights:
    """LoRec's per-user weight coefficients `a_u` and their update from calibrator scores (module docstring)."""

    n_users: int
    initial_weight: float = 3.0
    coefficients: np.ndarray = field(init=False)
    flags: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.coefficients = np.full(self.n_users, self.initial_weight)
        self.flags = np.zeros(self.n_users, dtype=np.int64)

    def update(self, scores: np.ndarray, users: np.ndarray, flagged: np.ndarray | None = None) -> bool:
        """Apply one update to the `flagged` users (indices; default: the `users` scored above the mean of
        `scores`, theirs in the same order, LoRec's rule); skipped, returning False, when none or a third of
        the `users` or more would be flagged (LoRec's rule)."""
        if flagged is None:
            flagged = users[scores > scores.mean()]
        if len(flagged) >= len(users) / 3 or len(flagged) == 0:
            return False
        others = np.setdiff1d(users, flagged)
        self.coefficients[flagged] -= 1.0
        self.coefficients[others] += len(flagged) / len(others)
        self.flags[flagged] += 1
        return True

    def weights(self) -> np.ndarray:
        """`[n_users]` training weights `sigmoid(a_u) / sigmoid(a_0)`, with (0.5, 1) rounded up to 1."""
        w = _sigmoid(self.coefficients) / _sigmoid(self.initial_weight)
        return np.where((w > 0.5) & (w < 1.0), 1.0, w)


def flagged_users(scores: np.ndarray, users: np.ndarray, config: DefenceConfig) -> np.ndarray:
    """The `users` (indices) one weight update flags from their `scores` (probabilities, same order): those
    above `config.flag_threshold`, at most the `config.max_flagged_fraction` highest scored (ties broken by
    user order); LoRec's above-the-mean rule when the threshold is None."""
    if config.flag_threshold is None:
        return users[scores > scores.mean()]
    cap = int(np.floor(config.max_flagged_fraction * len(users)))
    order = np.argsort(-scores, kind="stable")[:cap]
    return np.sort(users[order[scores[order] > config.flag_threshold]])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


# -- the defence -------------------------------------------------------------------------------------


class Calibrator:
    """The calibrator of one log: the defender's simulated fakes and the features that do not change
    during training, computed once; `score` refits it with the recommender's current item embeddings."""

    def __init__(self, data: LoggedInteractions, config: DefenceConfig) -> None:
        self.config = config
        seqs = data.sequences()
        lengths = seqs.lengths()
        self.users = np.flatnonzero(lengths > 0)  # users with no event get no score (and train nothing)
        self.offsets = np.r_[0, np.cumsum(lengths[self.users])].astype(np.int64)
        self.items, self.fakes = seqs.item_ids, simulate_fakes(data, config)
        self.popularity = np.bincount(seqs.item_ids, minlength=data.n_items)
        self.text = text_embeddings(data.items, data.n_items, config.text_dim) if config.use_text else None
        tables = () if self.text is None else (self.text,)
        self.logged_static = user_features(
            self.offsets,
            seqs.item_ids,
            seqs.timestamps,
            seqs.feedback,
            popularity=self.popularity,
            item_tables=tables,
        )
        # Each simulation is featurised as if it had been injected alone: item popularity counts its own
        # events too, as the logs count the events of the fakes they may hold.
        groups = []
        for g in range(int(self.fakes.groups.max()) + 1):
            offsets, items, times, feedback = self.fakes.group(g)
            popularity = self.popularity + np.bincount(items, minlength=data.n_items)
            groups.append(
                user_features(offsets, items, times, feedback, popularity=popularity, item_tables=tables)
            )
        self.fake_static = np.concatenate(groups)
        self.fits = 0

    def score(self, item_table: np.ndarray | None = None) -> np.ndarray:
        """`[len(self.users)]` probability that each user with events is fake, from a fresh fit (seeded by
        the config's seed and the number of fits so far) with coherence features of `item_table` `[N, D]`
        (the recommender's item embeddings; None leaves them out)."""
        logged, fake = self.logged_static, self.fake_static
        if item_table is not None:
            logged = np.concatenate([logged, _coherence(self.offsets, self.items, item_table)], axis=1)
            fake = np.concatenate(
                [fake, _coherence(self.fakes.offsets, self.fakes.items, item_table)], axis=1
            )
        self.fits += 1
        return fit_and_score(logged, fake, self.config, seed=self.config.seed * 7919 + self.fits)


def defend(
    data: LoggedInteractions, config: DefenceConfig, *, item_table: np.ndarray | None = None
) -> np.ndarray:
    """`[n_users]` LoRec training weights of the users of `data`, from `config.updates` calibrator fits on
    the sequence features (and on `item_table`'s coherence when given), without training a recommender.

    `train_defended` runs the full defence, in which the item embeddings change between updates.
    """
    if not isinstance(data, LoggedInteractions):
        raise ArgumentError(f"data: expected LoggedInteractions, got {type(data).__name__}")
    calibrator = Calibrator(data, config)
    weights = LoRecWeights(data.n_users, config.initial_weight)
    for _ in range(config.updates):
        scores = calibrator.score(item_table)
        weights.update(scores, calibrator.users, flagged_users(scores, calibrator.users, config))
    return weights.weights()


@dataclass
class DefendedTraining:
    """What `train_defended` produced."""

    weights: np.ndarray
    """`[n_users]` final training weights."""
    scores: np.ndarray
    """`[n_users]` the last calibrator probability of being fake (0 for users with no events)."""
    result: object
    """`TrainResult` of the defended encoder."""
    calibration: object
    """`TrainResult` of the calibration run."""
    trace: list[dict] = field(default_factory=list)
    """Per weight update: the epoch, the users flagged, whether LoRec's rule applied it."""


def train_defended(
    data: LoggedInteractions,
    build_encoder,
    trainer_config,
    config: DefenceConfig,
    *,
    eval_users: np.ndarray | None = None,
) -> tuple[object, DefendedTraining]:
    """LoRec's defence of an encoder trained on `data`: a calibration run that alternates recommender
    epochs and calibrator updates (through the trainer's `reweight` hook), then, with `config.retrain`, a
    fresh encoder trained with the final weights and the same seed and settings.

    Args:
        data: the (possibly poisoned) logs; the defence never sees which users are fake.
        build_encoder: builds a fresh encoder (called after `seed_everything(trainer_config.seed)`).
        trainer_config: the `TrainerConfig` of the defended encoder (the calibration run is capped at
            `config.calibration_epochs` epochs).
        config: the defence's settings.
        eval_users: the users whose validation and test targets are ranked (`train`'s argument).

    Returns:
        The defended encoder and a `DefendedTraining`.
    """
    import dataclasses

    from recsim_env.encoders.trainer import seed_everything, train

    calibrator = Calibrator(data, config)
    weights = LoRecWeights(data.n_users, config.initial_weight)
    scores = np.zeros(data.n_users)
    trace: list[dict] = []

    def reweight(epoch: int, encoder) -> np.ndarray | None:
        due = epoch >= config.start_epoch and (epoch - config.start_epoch) % config.update_every == 0
        if not due or len(trace) >= config.updates:
            return None
        table = encoder.item_table().detach().float().cpu().numpy().astype(np.float64)
        scores[calibrator.users] = calibrator.score(table)
        flagged = flagged_users(scores[calibrator.users], calibrator.users, config)
        applied = weights.update(scores[calibrator.users], calibrator.users, flagged)
        trace.append({"epoch": epoch, "flagged": int(len(flagged)), "applied": applied})
        return weights.weights() if applied else None

    calibration_config = dataclasses.replace(
        trainer_config, epochs=config.calibration_epochs, patience=config.calibration_epochs, max_seconds=None
    )
    seed_everything(trainer_config.seed)
    encoder = build_encoder()
    calibration = train(
        encoder, data.sequences(), calibration_config, eval_users=eval_users, reweight=reweight
    )
    final_weights = weights.weights()
    result = calibration
    if config.retrain:
        seed_everything(trainer_config.seed)
        encoder = build_encoder()
        result = train(
            encoder, data.sequences(), trainer_config, user_weights=final_weights, eval_users=eval_users
        )
    return encoder, DefendedTraining(final_weights, scores, result, calibration, trace)
