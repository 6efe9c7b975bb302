"""A learned simulator checked against off-policy evaluation on its own log: each panel policy's simulated
value beside its off-policy estimate, and where they disagree.

On world logs a simulator's policy values can be checked against the world (`simulators.policy_values`);
on real logs there is no world, so the reference is an off-policy estimate on the log. For every policy of
a panel that acts on the observation alone (uniform, popularity and greedy fitted on the log, and an
epsilon-mixture of greedy and uniform), `simulator_check` computes:

(a) its **simulated value**: the mean per-step reward over `episodes` episodes of `SeqRec-v0` on the
    simulator (`user_model=simulator`), with a percentile-bootstrap interval over episodes;
(b) its **off-policy estimates** on the log: DM, IPS, SNIPS and DR (`evaluation.ope`), the value per
    decision with bootstrap intervals over rows, on the same per-step reward;
(c) a **verdict**: "agree" when the simulated value lies in the verdict estimator's interval or within
    `tolerance` (relative) of its point estimate, else "disagree"; over the panel, Spearman's rank
    correlation of the two columns.

**The log.** The exposure stream the simulator was trained on, restricted to its held-out test users
(`simulators.train.config_user_split`), or the exposure stream of other logs passed as `logs`. On
positive-only logs (MovieLens) that stream holds every rated row (click = 1, its rating) and the sampled
unrated items (click = 0, rating 0, `SimulatorConfig.negative_rate` per rated row; docs/simulators.md): the
simulator's click is "rated rather than a random unrated item", and the off-policy side evaluates the same
quantity.

**The reward** of a step is `1[feedback[signal] >= threshold]` (`StepReward`), read from the simulator's
step feedback and from the logged row alike: `click >= 1` is the click; `rating >= 4` on MovieLens is
"consumed and rated 4 or 5" (the rating is 0 when nothing is consumed).

**The behaviour model** (the logging propensities, which the log does not record) is the item's frequency
in the evaluated exposure stream, `p_b(a) = count(a) / n`, the same for every row (as
`evaluation.ope.logged.bandit_feedback(estimate_missing_pscore=True)` estimates it). It is chosen because
it is what a log with no contexts identifies without a further model, and it is exact for the world's
uniform logger up to sampling noise. It is wrong wherever the logger's choice depended on the user: the
importance weights of a policy that picks items by the user's history (greedy) are then off, and the
estimates are only as good as this model. The DM / DR reward model is context-free too: each item's
smoothed mean reward on the simulator's training users' exposures (never the evaluated rows).

**Why the two can disagree, simulator right or not.** The simulated value averages over the histories the
policy itself produces from logged start prefixes; the off-policy estimate averages over the logged
histories. A policy that changes the history (greedy, by skipping seen items and shifting the user's
state) is valued on different contexts in the two columns. A deterministic policy (greedy) matches few
logged rows, so its IPS-type estimates rest on a few rows (see `ess`) and DR leans on the context-free
reward model.

Policies follow `recsim_env.policies.Policy` with one-item slates, rolled out by the package's one loop
(`recsim_env.rollout.run_episodes`: `policy.seed(seed)`, then `recsim_env.policies.act_slates`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evaluation.ope import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedInverseProbabilityWeighting,
)
from recsim_env.checks import check_config_fields, check_integer, check_real
from recsim_env.errors import ArgumentError
from recsim_env.policies import (
    GreedyPolicy,
    LoggedItemStats,
    PopularityPolicy,
    ReferencePolicy,
    UniformPolicy,
    act_slates,
)
from recsim_env.rollout import StepObserver, VectorStep, run_episodes

ESTIMATORS = ("DM", "IPS", "SNIPS", "DR")
"""The off-policy estimators the check runs, by name."""


@dataclass(frozen=True, kw_only=True)
class StepReward:
    """The per-step reward both sides use: `1[feedback[signal] >= threshold]`."""

    signal: str = "click"
    """Feedback signal the reward reads (a `schema.signals` name)."""
    threshold: float = 1.0
    """A step is worth 1 when the signal is at least this, else 0 (rating 4: "rated 4 or 5")."""

    def __post_init__(self) -> None:
        if not isinstance(self.signal, str) or not self.signal:
            raise ArgumentError(f"signal: expected a signal name, got {self.signal!r}")
        check_real("threshold", self.threshold)

    def of(self, feedback: np.ndarray, signals: tuple[str, ...]) -> np.ndarray:
        """[n] rewards of feedback rows `[n, F]` whose columns are `signals`."""
        if self.signal not in signals:
            raise ArgumentError(f"signal: {self.signal!r} is not a signal of the simulator {list(signals)}")
        return (feedback[:, signals.index(self.signal)] >= self.threshold).astype(np.float64)


@dataclass(frozen=True, kw_only=True)
class SimulatorCheckConfig:
    """How `simulator_check` values each policy on both sides."""

    episodes: int = 512
    """Simulated episodes per policy."""
    max_steps: int = 20
    """Steps per simulated episode at most (a leave ends it earlier)."""
    num_envs: int = 128
    """Simulated users stepped together."""
    max_rows: int = 20_000
    """Logged rows the off-policy side evaluates at most (a seeded subsample of whole users beyond it); the
    estimators hold about three `[rows, n_items]` float64 arrays."""
    epsilon: float = 0.3
    """Uniform share of the epsilon-mixture policy (the rest greedy)."""
    reward_prior: float = 20.0
    """Pseudo-exposures that smooth each item's mean reward toward the global one (DM / DR reward model)."""
    tolerance: float = 0.1
    """Relative distance from the off-policy point estimate within which the values still agree."""
    verdict_estimator: str = "DR"
    """The estimator whose interval the verdict reads (one of `ESTIMATORS`)."""
    alpha: float = 0.05
    """Significance level of every interval (0.05: 95%)."""
    n_bootstrap: int = 500
    """Bootstrap replicates of every interval."""
    seed: int = 0
    """Seed of the rollouts, the subsample, the policies' sampling and the bootstraps."""

    def __post_init__(self) -> None:
        check_config_fields(
            self, ("episodes", "max_steps", "num_envs", "max_rows", "n_bootstrap"), check_integer, low=1
        )
        check_config_fields(self, ("seed",), check_integer, low=0)
        check_config_fields(self, ("epsilon",), check_real, low=0.0, high=1.0)
        check_config_fields(self, ("reward_prior", "tolerance"), check_real, low=0.0)
        check_config_fields(self, ("alpha",), check_real, low=0.0, high=1.0, low_open=True, high_open=True)
        if self.verdict_estimator not in ESTIMATORS:
            raise ArgumentError(
                f"verdict_estimator: expected one of {ESTIMATORS}, got {self.verdict_estimator!r}"
            )


class EpsilonMixturePolicy(ReferencePolicy):
    """With probability `epsilon` a uniformly random item, else the item of `base` (one-item slates).

    Deterministic: the base's item. `seed` resets the mixture's generator and the base's.
    """

    def __init__(self, base, epsilon: float) -> None:
        super().__init__(base.n_items)
        self.base = base
        self.epsilon = check_real("epsilon", epsilon, low=0.0, high=1.0)
        self.name = f"epsilon-{base.name}"

    def seed(self, seed: int | None) -> None:
        super().seed(seed)
        self.base.seed(seed)

    def slates(self, batch, deterministic, user_state):
        slate = act_slates(self.base, batch, deterministic=deterministic)
        if not deterministic:
            explore = self.rng.random(len(slate)) < self.epsilon
            slate[explore, 0] = self.rng.integers(0, self.n_items, int(explore.sum()))
        return slate

    def probabilities(self, batch, user_state):
        return (1.0 - self.epsilon) * self.base.action_distribution(batch) + self.epsilon / self.n_items


def check_panel(stats: LoggedItemStats, n_items: int, epsilon: float) -> dict[str, Any]:
    """The panel: uniform, popularity and greedy fitted on `stats`, and the epsilon-mixture of greedy."""
    greedy = GreedyPolicy(stats)
    return {
        "uniform": UniformPolicy(n_items),
        "popularity": PopularityPolicy(stats),
        "greedy": greedy,
        f"epsilon-greedy ({epsilon:g})": EpsilonMixturePolicy(greedy, epsilon),
    }


# ------------------------------------------------------------------------------------------- the log side
@dataclass(frozen=True)
class LoggedSteps:
    """Logged exposures as bandit rounds: the observation before each row, its item and its reward."""

    item_ids: np.ndarray  # [n, L] the user's previous L exposures, left-padded with n_items
    feedback: np.ndarray  # [n, L, F] their feedback
    action: np.ndarray  # [n] the logged item
    reward: np.ndarray  # [n] `StepReward` of the logged row

    @property
    def obs(self) -> dict[str, np.ndarray]:
        """The observation a policy reads (`item_ids`, `feedback`)."""
        return {"item_ids": self.item_ids, "feedback": self.feedback}


def logged_steps(
    log, users: np.ndarray, *, history_len: int, n_items: int, reward: np.ndarray
) -> LoggedSteps:
    """The rounds of `log` (an `ExposureLog`) for `users`, each with its user's previous `history_len` rows.

    `reward` [T] is the reward of every row of `log`.
    """
    rows = np.concatenate([np.arange(log.offsets[u], log.offsets[u + 1]) for u in users])
    starts = np.repeat(log.offsets[users], np.diff(log.offsets)[users])
    back = rows[:, None] - history_len + np.arange(history_len)[None, :]  # [n, L]
    valid = back >= starts[:, None]
    safe = np.where(valid, back, 0)
    item_ids = np.where(valid, log.items[safe], n_items)
    feedback = np.where(valid[:, :, None], log.feedback[safe], 0.0).astype(np.float32)
    return LoggedSteps(item_ids, feedback, log.items[rows], reward[rows])


def item_frequency_pscore(action: np.ndarray, n_items: int) -> np.ndarray:
    """[n] the behaviour model's propensity of each logged item: its frequency among the rows."""
    return np.bincount(action, minlength=n_items)[action] / len(action)


def item_reward_model(items: np.ndarray, reward: np.ndarray, n_items: int, prior: float) -> np.ndarray:
    """[n_items] each item's mean reward, smoothed toward the global mean by `prior` pseudo-exposures."""
    global_mean = reward.mean() if len(reward) else 0.0
    total = np.bincount(items, weights=reward, minlength=n_items)
    count = np.bincount(items, minlength=n_items)
    return (total + prior * global_mean) / (count + prior)


def off_policy_estimates(
    steps: LoggedSteps,
    action_dist: np.ndarray,
    pscore: np.ndarray,
    q_hat: np.ndarray,
    *,
    alpha: float,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """DM, IPS, SNIPS and DR of a policy with `action_dist` [n, N] on `steps`, and the weights' ESS share."""
    n = len(steps.action)
    data = {
        "reward": steps.reward,
        "action": steps.action,
        "position": np.zeros(n, np.int64),
        "pscore": pscore,
        "action_dist": action_dist[:, :, None],
        "estimated_rewards_by_reg_model": np.broadcast_to(
            q_hat[None, :, None], action_dist.shape + (1,)
        ).copy(),
    }
    estimators = {
        "DM": DirectMethod(),
        "IPS": InverseProbabilityWeighting(),
        "SNIPS": SelfNormalizedInverseProbabilityWeighting(),
        "DR": DoublyRobust(),
    }
    out = {}
    for name, estimator in estimators.items():
        e = estimator.estimate(alpha=alpha, n_bootstrap_samples=n_bootstrap, random_state=seed, **data)
        out[name] = {"value": e.value, "lower": e.lower, "upper": e.upper}
    weights = action_dist[np.arange(n), steps.action] / pscore
    ess = weights.sum() ** 2 / max((weights**2).sum(), 1e-300)
    return {"estimates": out, "ess_share": float(ess / n), "max_weight": float(weights.max())}


# ------------------------------------------------------------------------------------- the simulator side
def simulated_value(
    simulator,
    policy,
    reward: StepReward,
    *,
    episodes: int,
    max_steps: int,
    num_envs: int,
    seed: int,
    alpha: float,
    n_bootstrap: int,
) -> dict[str, Any]:
    """Mean per-step reward of `policy` in `SeqRec-v0` on `simulator`, with a bootstrap interval over episodes.

    `first_step` is the mean reward of the episodes' first steps alone, whose histories are logged prefixes
    (the start pool's), as the off-policy side's are: its gap to `value` is what the policy's own
    histories change, its gap to the off-policy estimate what the simulator's responses change.

    Sub-env i is seeded `seed + i` and the policy is reseeded with `policy.seed(seed)`; each sub-env
    plays a fixed quota of episodes (a first-n-to-finish rule would favour short episodes).
    """
    from recsim_env.envs.seqrec import SeqRecVectorEnv

    num_envs = min(num_envs, episodes)
    env = SeqRecVectorEnv(
        num_envs=num_envs, user_model=simulator, history_len=simulator.history_len, max_steps=max_steps
    )
    finished = _EpisodeRewards(reward, tuple(env.signals), num_envs)
    run_episodes(env, policy=policy, observer=finished, seed=seed, n_episodes=episodes)
    totals, lengths = np.asarray(finished.reward), np.asarray(finished.steps)
    boot = np.random.default_rng(seed).integers(0, len(totals), size=(n_bootstrap, len(totals)))
    replicates = totals[boot].sum(axis=1) / lengths[boot].sum(axis=1)
    lower, upper = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {
        "value": float(totals.sum() / lengths.sum()),
        "lower": float(lower),
        "upper": float(upper),
        "first_step": float(np.mean(finished.first)),
        "episodes": len(totals),
        "steps": int(lengths.sum()),
    }


class _EpisodeRewards(StepObserver):
    """`simulated_value`'s observer: each counted episode's total reward, steps and first-step reward."""

    def __init__(self, reward: StepReward, signals: tuple[str, ...], num_envs: int) -> None:
        self.step_reward, self.signals = reward, signals
        self.running_reward = np.zeros(num_envs)
        self.running_steps = np.zeros(num_envs)
        self.first_reward = np.zeros(num_envs)
        self.reward: list[float] = []
        self.steps: list[float] = []
        self.first: list[float] = []

    def on_step(self, step: VectorStep) -> None:
        live = step.live
        step_reward = self.step_reward.of(step.info["feedback"], self.signals)
        first = live & (self.running_steps == 0)
        self.first_reward[first] = step_reward[first]
        self.running_reward[live] += step_reward[live]
        self.running_steps[live] += 1
        for i in np.flatnonzero(step.counted):
            self.reward.append(self.running_reward[i])
            self.steps.append(self.running_steps[i])
            self.first.append(self.first_reward[i])
        self.running_reward[step.done] = 0.0
        self.running_steps[step.done] = 0.0


# --------------------------------------------------------------------------------------------- the check
def verdict(simulated: float, estimate: Mapping[str, float], tolerance: float) -> dict[str, Any]:
    """Agree when `simulated` lies in the estimate's interval or within `tolerance` (relative) of its point."""
    value = estimate["value"]
    if value:
        relative = (simulated - value) / abs(value)
    else:  # a zero estimate: any other simulated value is infinitely far in relative terms
        relative = 0.0 if simulated == value else math.copysign(math.inf, simulated)
    inside = estimate["lower"] <= simulated <= estimate["upper"]
    close = abs(relative) <= tolerance
    if inside:
        reason = "inside the interval"
    elif close:
        reason = f"outside the interval, within {tolerance:.0%} of the estimate"
    else:
        side = "above" if simulated > estimate["upper"] else "below"
        reason = f"{side} the interval, {relative:+.0%} from the estimate"
    return {
        "verdict": "agree" if inside or close else "disagree",
        "relative_difference": relative,
        "reason": reason,
    }


def simulator_check(
    simulator,
    *,
    reward: StepReward,
    config: SimulatorCheckConfig | None = None,
    logs=None,
    on_policy: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Each panel policy's simulated value beside its off-policy estimates on the log, with a verdict.

    Args:
        simulator: a `LearnedSimulator` (`simulators.fit(...).simulator` or `simulators.load(dir)`).
        reward: the per-step reward of both sides.
        config: rollout, estimation and verdict settings.
        logs: `LoggedInteractions` to evaluate on (turned into exposures as the simulator's training was);
            None: the simulator's own exposure stream, its held-out test users only.
        on_policy: called with each policy's name before it is valued (progress).

    Returns:
        A JSON-ready dict: `policies` {name: {simulated, off_policy, ess_share, max_weight, verdict, ...}},
        `spearman` (simulated against the verdict estimator's values), `agree` (count), the log's size
        and the settings.
    """
    from scipy.stats import spearmanr

    from simulators.train import config_exposures, config_user_split

    config = config or SimulatorCheckConfig()
    if not isinstance(reward, StepReward):
        raise ArgumentError(f"reward: expected a StepReward, got {type(reward).__name__}")
    schema, sim_config = simulator.schema, simulator.config
    n_items = simulator.n_items
    pool = simulator.start_pool
    train_users, _, test_users = config_user_split(pool, sim_config)
    if logs is None:
        log, users, source = pool, test_users, "the simulator's exposure stream, held-out test users"
    else:
        log = config_exposures(logs, schema, sim_config)
        users, source = np.flatnonzero(log.lengths() > 0), f"{getattr(logs, 'name', 'logs')}, all users"
    log_reward = reward.of(log.feedback, schema.signals)
    rng = np.random.default_rng(config.seed)
    users = rng.permutation(users)
    keep = np.cumsum(log.lengths()[users]) <= config.max_rows
    keep[0] = True
    users = np.sort(users[keep])
    steps = logged_steps(log, users, history_len=simulator.history_len, n_items=n_items, reward=log_reward)
    pscore = item_frequency_pscore(steps.action, n_items)
    # The panel and the reward model learn from the training users, never from the evaluated rows.
    train_rows = np.concatenate([np.arange(pool.offsets[u], pool.offsets[u + 1]) for u in train_users])
    click = pool.feedback[train_rows, schema.signals.index("click")].astype(np.float64)
    stats = LoggedItemStats(
        clicks=np.bincount(pool.items[train_rows], weights=click, minlength=n_items),
        impressions=np.bincount(pool.items[train_rows], minlength=n_items).astype(np.float64),
        category=None,
        context_clicks=None,
        context_impressions=None,
    )
    train_reward = reward.of(pool.feedback[train_rows], schema.signals)
    q_hat = item_reward_model(pool.items[train_rows], train_reward, n_items, config.reward_prior)
    panel = check_panel(stats, n_items, config.epsilon)
    common = {"alpha": config.alpha, "n_bootstrap": config.n_bootstrap, "seed": config.seed}
    table: dict[str, dict[str, Any]] = {}
    for name, policy in panel.items():
        if on_policy is not None:
            on_policy(name)
        ope = off_policy_estimates(steps, policy.action_distribution(steps.obs), pscore, q_hat, **common)
        sim = simulated_value(
            simulator,
            policy,
            reward,
            episodes=config.episodes,
            max_steps=config.max_steps,
            num_envs=config.num_envs,
            **common,
        )
        entry = {"simulated": sim, "off_policy": ope["estimates"], "ess_share": ope["ess_share"]}
        entry["max_weight"] = ope["max_weight"]
        entry.update(verdict(sim["value"], ope["estimates"][config.verdict_estimator], config.tolerance))
        table[name] = entry
    names = list(table)
    rho = float(
        spearmanr(
            [table[n]["simulated"]["value"] for n in names],
            [table[n]["off_policy"][config.verdict_estimator]["value"] for n in names],
        ).statistic
    )
    return {
        "reward": asdict(reward),
        "config": asdict(config),
        "log": {
            "source": source,
            "rows": len(steps.action),
            "users": len(users),
            "logged_value": float(steps.reward.mean()),
            "behaviour_model": "item frequency in the evaluated rows (context-free)",
        },
        "policies": table,
        "spearman": rho,
        "agree": sum(entry["verdict"] == "agree" for entry in table.values()),
    }
