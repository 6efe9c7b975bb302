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
9% of MovieLens users at 1% fakes, benchmarks/RESULTS_poison.md). By default this defence sets its
threshold from its own data at every update: every user and every simulated fake is scored by a
calibrator fitted without it (cross-fitting), and a user is flagged when it scores at least what a share
`flag_recall` of the held-out simulated fakes reach, at most the `max_flagged_fraction` highest scored
(the defender's bound on the fake share it expects). `flag_recall=None` uses a fixed probability
threshold `flag_threshold` instead, and both None restore LoRec's rule. The calibrator's loss is
LoRec's (its `custom_loss`): binary cross-entropy plus `entropy_weight` times the entropy of the
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

import math
from dataclasses import dataclass, field

import numpy as np

from evaluation.attacks.defence_features import coherence, text_embeddings, user_features
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
    flag_recall: float | None = 0.9
    """A user is flagged when its score reaches the score that this share of the defender's held-out
    simulated fakes reach (the threshold is set anew at each update from the defender's own data);
    None: `flag_threshold`'s rule."""
    flag_threshold: float | None = 0.5
    """With `flag_recall` None, a user is flagged when the calibrator's probability that it is fake is
    above this; both None: LoRec's rule (above the mean score)."""
    max_flagged_fraction: float = 0.05
    """With `flag_recall` or `flag_threshold`, at most this fraction of the scored users (the highest
    scored) is flagged per update: the defender's bound on the share of fake users it expects."""
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

    def update_due(self, epoch: int, done: int) -> bool:
        """Whether the weights update after recommender `epoch`, `done` updates having been made."""
        return (
            epoch >= self.start_epoch
            and (epoch - self.start_epoch) % self.update_every == 0
            and done < self.updates
        )

    def __post_init__(self) -> None:
        check_config_fields(
            self, ("simulated_fraction",), check_real, low=0.0, high=1.0, low_open=True, high_open=True
        )
        check_config_fields(self, ("calibrator_lr",), check_real, low=0.0, low_open=True)
        check_config_fields(self, ("flag_threshold",), check_real, low=0.0, high=1.0, optional=True)
        check_config_fields(
            self, ("flag_recall",), check_real, low=0.0, high=1.0, low_open=True, optional=True
        )
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


@dataclass(frozen=True)
class CalibratorScores:
    """Out-of-fold probabilities of being fake from one calibrator fit (`fit_and_score`)."""

    logged: np.ndarray
    """`[U]` each logged user's, from the folds fitted without it."""
    simulated: np.ndarray
    """`[n_fakes]` each of the defender's simulated fakes', from the folds fitted without it."""


def fit_and_score(
    logged: np.ndarray, simulated: np.ndarray, config: DefenceConfig, seed: int
) -> CalibratorScores:
    """The calibrator's probability that each `logged` user and each `simulated` fake is fake, out of
    fold: both groups are split into `config.folds` folds, and fold k of each is scored by an MLP fitted
    on the simulated fakes (label 1) and the logged users (label 0) of the other folds.

    The simulated fakes' out-of-fold scores are what a fake unseen by the calibrator scores, the
    reference of `flagged_users`' `flag_recall` rule. Features are standardised over both groups and
    clipped to [-5, 5] (a feature nearly constant among logged users, such as repetition in MovieLens,
    would otherwise reach thousands of deviations). Runs on the CPU with its own seed; the global torch
    RNG is left as it was.
    """
    import torch

    from recsim_env.encoders.trainer import torch_threads

    both = np.concatenate([logged, simulated])
    standard = np.clip((both - both.mean(axis=0)) / (both.std(axis=0) + 1e-9), -5.0, 5.0)
    x_logged = torch.from_numpy(standard[: len(logged)]).float()
    x_fake = torch.from_numpy(standard[len(logged) :]).float()
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(logged)) % config.folds
    fake_fold = rng.permutation(len(simulated)) % config.folds
    scores, fake_scores = np.zeros(len(logged)), np.zeros(len(simulated))
    with torch.random.fork_rng(devices=[]), torch_threads(1):  # tiny matrices: one thread is fastest
        torch.manual_seed(seed)
        for k in range(config.folds):
            train_rows = torch.from_numpy(np.flatnonzero(fold != k))
            fake_rows = torch.from_numpy(np.flatnonzero(fake_fold != k))
            x = torch.cat([x_logged[train_rows], x_fake[fake_rows]])
            y = torch.cat([torch.zeros(len(train_rows)), torch.ones(len(fake_rows))])
            model = torch.nn.Sequential(
                torch.nn.Linear(x.shape[1], config.hidden), torch.nn.GELU(), torch.nn.Linear(config.hidden, 1)
            )
            optimiser = torch.optim.Adam(model.parameters(), lr=config.calibrator_lr, weight_decay=5e-4)
            for _ in range(config.steps):
                optimiser.zero_grad()
                loss = calibrator_loss(model(x).squeeze(1), y, config.entropy_weight)
                loss.backward()
                optimiser.step()
            held_out, fake_held_out = np.flatnonzero(fold == k), np.flatnonzero(fake_fold == k)
            with torch.no_grad():
                scores[held_out] = torch.sigmoid(model(x_logged[held_out])).squeeze(1).double().numpy()
                fake_scores[fake_held_out] = (
                    torch.sigmoid(model(x_fake[fake_held_out])).squeeze(1).double().numpy()
                )
    return CalibratorScores(scores, fake_scores)


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


def flag_threshold(scores: CalibratorScores, config: DefenceConfig) -> float | None:
    """The score above which `flagged_users` flags a user (at or above it with `flag_recall`): with
    `config.flag_recall` r, the highest score that at least a share r of the simulated fakes' out-of-fold
    scores reach (the ceil(r n)-th highest of n); else `config.flag_threshold`; None for LoRec's rule."""
    if config.flag_recall is None:
        return config.flag_threshold
    ranked = np.sort(scores.simulated)[::-1]
    k = max(1, math.ceil(round(config.flag_recall * len(ranked), 9)))
    return float(ranked[k - 1])


def flagged_users(scores: CalibratorScores, users: np.ndarray, config: DefenceConfig) -> np.ndarray:
    """The `users` (indices) one weight update flags from their `scores.logged` (probabilities, same
    order), sorted: with `config.flag_recall`, those scored at or above `flag_threshold(scores, config)`;
    with `config.flag_threshold`, those above it; at most the `config.max_flagged_fraction` highest
    scored of either (ties broken by user order); both None: LoRec's above-the-mean rule."""
    logged = scores.logged
    threshold = flag_threshold(scores, config)
    if threshold is None:
        return users[logged > logged.mean()]
    cap = int(np.floor(config.max_flagged_fraction * len(users)))
    order = np.argsort(-logged, kind="stable")[:cap]
    above = logged[order] >= threshold if config.flag_recall is not None else logged[order] > threshold
    return np.sort(users[order[above]])


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

    def score(self, item_table: np.ndarray | None = None) -> CalibratorScores:
        """Out-of-fold probabilities of being fake of the users with events (`[len(self.users)]`, in
        `self.users`' order) and of the simulated fakes, from a fresh fit (seeded by the config's seed
        and the number of fits so far) with coherence features of `item_table` `[N, D]` (the
        recommender's item embeddings; None leaves them out)."""
        logged, fake = self.logged_static, self.fake_static
        if item_table is not None:
            logged = np.concatenate([logged, coherence(self.offsets, self.items, item_table)], axis=1)
            fake = np.concatenate([fake, coherence(self.fakes.offsets, self.fakes.items, item_table)], axis=1)
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
        weights.update(scores.logged, calibrator.users, flagged_users(scores, calibrator.users, config))
    return weights.weights()


def update_summary(scores: CalibratorScores, threshold: float | None, flagged: np.ndarray) -> dict:
    """What one weight update saw, without the fake-user list: the threshold, the number flagged, and
    quantiles of the logged users' and of the held-out simulated fakes' scores."""
    quantiles = (0.1, 0.5, 0.9, 0.95, 0.99)

    def table(values: np.ndarray) -> dict[str, float]:
        return {
            str(q): round(float(v), 4) for q, v in zip(quantiles, np.quantile(values, quantiles), strict=True)
        }

    return {
        "threshold": None if threshold is None else round(float(threshold), 4),
        "flagged": int(len(flagged)),
        "logged_quantiles": table(scores.logged),
        "simulated_quantiles": table(scores.simulated),
    }


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
    """Per weight update: the epoch, whether LoRec's rule applied it and `update_summary`'s figures."""
    score_history: np.ndarray | None = None
    """`[updates, n_users]` each update's calibrator probabilities (0 for users with no events)."""
    flag_counts: np.ndarray | None = None
    """`[n_users]` how many updates flagged each user (applied updates only)."""
    flagged_history: list[np.ndarray] = field(default_factory=list)
    """Per weight update, the users (indices) it flagged, applied or not."""


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
    history: list[np.ndarray] = []
    flagged_history: list[np.ndarray] = []

    def reweight(epoch: int, encoder) -> np.ndarray | None:
        if not config.update_due(epoch, len(trace)):
            return None
        table = encoder.item_table().detach().float().cpu().numpy().astype(np.float64)
        fit = calibrator.score(table)
        scores[calibrator.users] = fit.logged
        history.append(scores.copy())
        flagged = flagged_users(fit, calibrator.users, config)
        flagged_history.append(flagged)
        applied = weights.update(fit.logged, calibrator.users, flagged)
        summary = update_summary(fit, flag_threshold(fit, config), flagged)
        trace.append({"epoch": epoch, "applied": applied, **summary})
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
    score_history = np.stack(history) if history else np.zeros((0, data.n_users))
    return encoder, DefendedTraining(
        final_weights,
        scores,
        result,
        calibration,
        trace,
        score_history,
        weights.flags.copy(),
        flagged_history,
    )
