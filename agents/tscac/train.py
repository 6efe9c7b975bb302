"""TSCAC training: the critic and stage one, the main actor of each variant (stage two for TSCAC),
`train` on logs, and online training and evaluation in `SeqRec-v0`."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.minibatches import WindowMinibatches
from agents.tscac.config import AUX, AUX_SIGN, AUX_SIGNALS, MAIN, SIGNALS, TSCACConfig
from agents.tscac.data import Transitions, _concatenate, transitions_from_logs
from agents.tscac.losses import _actor_step_weights, constraint_thresholds, signed_aux, stage_two_weights
from agents.tscac.model import Actor, Critic
from agents.tscac.policy import TSCACPolicy
from recsim_env.encoders.trainer import resolve_device
from recsim_env.rollout import StepObserver, VectorStep, run_episodes


def _minibatches(
    data: Transitions, config: TSCACConfig, device: torch.device, seed_offset: int = 0
) -> WindowMinibatches:
    """Minibatches of `data`'s transitions (states gathered from the shared windows), seeded by the config."""
    return WindowMinibatches(
        data.item_ids,
        data.feedback,
        n_steps=len(data),
        batch_size=config.batch_size,
        seed=config.seed + seed_offset,
        device=device,
    )


def fit_critic(
    config: TSCACConfig,
    data: Transitions,
    *,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> Critic:
    """TD(0) for every signal's value: V_i(s) <- r_i + gamma_i (1 - done) V_i^target(s')."""
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    critic = Critic(config, data.n_items).to(device)
    target = copy.deepcopy(critic).eval()
    optimizer = torch.optim.Adam(critic.parameters(), lr=config.learning_rate)
    batches = _minibatches(data, config, device)
    gammas = batches.tensor(config.gammas)
    scale = batches.tensor(config.reward_scale)
    for step in tqdm(range(config.critic_steps), desc="tscac critic", disable=not progress):
        index = batches.sample()
        reward = batches.tensor(data.reward[index]) * scale  # [B, 6]
        done = batches.tensor(data.done[index])[:, None]
        with torch.no_grad():
            target_value = reward + gammas * (1.0 - done) * target(*batches.windows(data.next_state[index]))
        loss = F.smooth_l1_loss(critic(*batches.windows(data.state[index])), target_value)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # Polyak-averaged target network
            for p, p_target in zip(critic.parameters(), target.parameters(), strict=True):
                p_target.lerp_(p, config.target_tau)
        if on_step is not None:
            on_step(step, {"critic_loss": float(loss.detach())})
    return critic.eval()


@torch.no_grad()
def advantages(critic: Critic, config: TSCACConfig, data: Transitions, chunk: int = 4096) -> np.ndarray:
    """[T, 6] one-step advantages A_i = r_i + gamma_i (1 - done) V_i(s') - V_i(s) (TSCAC eq. 4), scaled rewards."""
    device = next(critic.parameters()).device
    batches = _minibatches(data, config, device)
    gammas = batches.tensor(config.gammas)
    out = np.empty((len(data), len(SIGNALS)), dtype=np.float32)
    for start in range(0, len(data), chunk):
        rows = np.arange(start, min(start + chunk, len(data)))
        reward = batches.tensor(data.reward[rows]) * batches.tensor(config.reward_scale)
        done = batches.tensor(data.done[rows])[:, None]
        value = critic(*batches.windows(data.state[rows]))
        following = critic(*batches.windows(data.next_state[rows]))
        out[rows] = (reward + gammas * (1.0 - done) * following - value).cpu().numpy()
    return out


WeightFn = Callable[[np.ndarray, torch.Tensor], torch.Tensor]
"""(batch rows [B], log pi_h(a|s) [B, H] of the actor being fitted) -> [B, H] weights of `-sum w log pi`."""


def fit_actor(
    config: TSCACConfig,
    data: Transitions,
    weights: WeightFn,
    *,
    n_heads: int = 1,
    desc: str = "tscac actor",
    seed_offset: int = 0,
    progress: bool = True,
    on_step: Callable[[int, torch.Tensor, np.ndarray], None] | None = None,
) -> Actor:
    """Fit an actor by weighted log-likelihood `-sum_j w_j log pi(a_j|s_j)` over minibatches of logged actions.

    Every actor of the module is this loop with a different weight function (per head with `n_heads > 1`);
    `on_step(step, log_pi, rows)` sees each batch (RCPO's dual ascent uses it).
    """
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    torch.manual_seed(config.seed + seed_offset)
    actor = Actor(config, data.n_items, n_heads).to(device)
    optimizer = torch.optim.Adam(actor.parameters(), lr=config.learning_rate)
    batches = _minibatches(data, config, device, seed_offset)
    generator = torch.Generator(device=device).manual_seed(config.seed + seed_offset)
    for step in tqdm(range(config.actor_steps), desc=desc, disable=not progress):
        rows = batches.sample()
        action = batches.tensor(data.action[rows], torch.long)
        candidates = None
        if config.n_candidates:
            candidates = torch.randint(
                0, data.n_items, (config.n_candidates,), device=device, generator=generator
            )
        log_pi = actor.log_prob(*batches.windows(data.state[rows]), action, candidates)
        loss = -(weights(rows, log_pi.detach()).detach() * log_pi).sum()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(actor.parameters(), 1.0)
        optimizer.step()
        if on_step is not None:
            on_step(step, log_pi.detach(), rows)
    return actor.eval()


def fit_stage_one(
    config: TSCACConfig, data: Transitions, advantage: np.ndarray, *, progress: bool = True
) -> Actor:
    """Stage one: one policy pi_i per auxiliary signal (head i), each on its own (signed) advantage A_i."""
    aux = signed_aux(advantage)

    def weights(rows, log_pi):
        return _actor_step_weights(config, torch.as_tensor(aux[rows], device=log_pi.device))

    return fit_actor(
        config,
        data,
        weights,
        n_heads=len(AUX_SIGNALS),
        desc="tscac stage one",
        seed_offset=1,
        progress=progress,
    )


@torch.no_grad()
def logged_log_probs(actor: Actor, data: Transitions, chunk: int = 4096) -> np.ndarray:
    """[T, H] log pi_h(a_t|s_t) of each head at the logged actions (full-catalogue softmax)."""
    device = next(actor.parameters()).device
    item_ids = torch.as_tensor(data.item_ids, device=device)
    feedback = torch.as_tensor(data.feedback, device=device)
    out = np.empty((len(data), actor.n_heads), dtype=np.float32)
    for start in range(0, len(data), chunk):
        rows = torch.as_tensor(data.state[start : start + chunk], device=device)
        action = torch.as_tensor(np.array(data.action[start : start + chunk]), device=device)
        out[start : start + len(rows)] = actor.log_prob(item_ids[rows], feedback[rows], action).cpu().numpy()
    return out


class StageOne(NamedTuple):
    """What every variant's actor step reads: the critic's advantages and the stage-one actors' log-probs."""

    critic: Critic
    advantage: np.ndarray  # [T, 6]
    actors: Actor | None  # stage-one pi_i, one head per auxiliary signal (None unless TSCAC needs them)
    aux_log_probs: np.ndarray | None  # [T, m]


def fit_critics_and_stage_one(
    config: TSCACConfig, data: Transitions, *, with_actors: bool = True, progress: bool = True
) -> StageOne:
    """The critic on every signal and (for TSCAC) the stage-one actors; shared by all variants of a run."""
    critic = fit_critic(config, data, progress=progress)
    advantage = advantages(critic, config, data)
    if not with_actors:
        return StageOne(critic, advantage, None, None)
    actors = fit_stage_one(config, data, advantage, progress=progress)
    return StageOne(critic, advantage, actors, logged_log_probs(actors, data))


def fit_main_actor(
    config: TSCACConfig,
    data: Transitions,
    stage_one: StageOne,
    *,
    thresholds: Mapping[str, float] | None = None,
    progress: bool = True,
) -> tuple[Actor, dict]:
    """The final actor of `config.variant` (stage two for TSCAC); returns it and training statistics."""
    adv_main = stage_one.advantage[:, MAIN]
    aux = signed_aux(stage_one.advantage)
    log_pb = np.log(data.propensity)
    stats: dict = {}
    on_step = None
    if config.variant == "tscac":
        if stage_one.aux_log_probs is None:
            raise ValueError(
                "TSCAC's stage two needs the stage-one actors (fit_critics_and_stage_one(with_actors=True))"
            )

        def weights(rows, log_pi):
            tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=log_pi.device)  # noqa: E731
            return stage_two_weights(
                tensor(stage_one.aux_log_probs[rows]),
                tensor(adv_main[rows]),
                tensor(log_pb[rows]),
                config.lambdas,
            )[:, None]

    elif config.variant == "bc":

        def weights(rows, log_pi):
            return torch.full_like(log_pi, 1.0 / len(log_pi))  # [B, 1]

    elif config.variant == "scalarised":
        combined = adv_main + aux @ np.asarray(config.scalarised_weights)

        def weights(rows, log_pi):
            return _actor_step_weights(config, torch.as_tensor(combined[rows], device=log_pi.device))[:, None]

    else:  # rcpo
        if thresholds is None:
            raise ValueError("RCPO needs the constraint thresholds")
        signed_threshold = np.array([thresholds[n] for n in AUX_SIGNALS]) * AUX_SIGN
        signed_reward = data.reward[:, AUX] * AUX_SIGN
        mu = np.zeros(len(AUX_SIGNALS))
        estimate = signed_reward.mean(axis=0)  # running SNIPS estimate of J_i(pi), starts at the behaviour's
        stats["mu"] = mu

        def weights(rows, log_pi):
            advantage = torch.as_tensor(adv_main[rows] + aux[rows] @ mu, device=log_pi.device)
            return _actor_step_weights(config, advantage)[:, None]

        def on_step(step, log_pi, rows):
            # Dual ascent on the estimated violation c_i - J_i(pi) (SNIPS of the per-step rate on the batch).
            ratio = np.exp(log_pi[:, 0].cpu().numpy().astype(np.float64) - log_pb[rows])
            batch_rate = ratio @ signed_reward[rows] / ratio.sum()
            estimate[:] = 0.9 * estimate + 0.1 * batch_rate
            mu[:] = np.maximum(0.0, mu + config.rcpo_learning_rate * (signed_threshold - estimate))

    actor = fit_actor(
        config,
        data,
        weights,
        desc=f"tscac[{config.variant}]",
        seed_offset=100,
        progress=progress,
        on_step=on_step,
    )
    if "mu" in stats:
        stats["mu"] = dict(zip(AUX_SIGNALS, map(float, stats["mu"]), strict=True))
    return actor, stats


def train(
    config: TSCACConfig,
    data,
    *,
    stage_one: StageOne | None = None,
    progress: bool = True,
) -> tuple[TSCACPolicy, dict]:
    """Train `config.variant` offline on logs (`LoggedInteractions` or `Transitions`); returns policy and stats.

    `stage_one` (from `fit_critics_and_stage_one` on the same data and critic settings) lets several
    variants or lambda values share one critic and one set of stage-one actors. Deterministic on CPU.
    """
    transitions = data if isinstance(data, Transitions) else transitions_from_logs(data, config.history_len)
    thresholds = constraint_thresholds(transitions.behaviour_rates(), config.tolerance)
    if stage_one is None:
        stage_one = fit_critics_and_stage_one(
            config, transitions, with_actors=config.variant == "tscac", progress=progress
        )
    actor, stats = fit_main_actor(config, transitions, stage_one, thresholds=thresholds, progress=progress)
    stats["thresholds"] = thresholds
    return TSCACPolicy(actor, config, transitions.n_items), stats


def collect_transitions(
    policy, *, steps: int, seed: int = 0, num_envs: int = 64, history_len: int = 20, **env_kwargs
) -> Transitions:
    """Run `policy` (any `agents.Policy`, stochastic) in `SeqRec-v0` for `steps` steps; its exact
    probabilities of the shown items are the propensities. Episodes still running at the end are cut
    (their last step is marked done)."""
    from recsim_env.envs import SeqRecVectorEnv

    env = SeqRecVectorEnv(num_envs=num_envs, history_len=history_len, **env_kwargs)
    collector = _Collector(policy, env.user_model.n_items, np.random.default_rng(seed))
    run_episodes(env, act=collector.act, observer=collector, seed=seed, n_steps=steps, exact_steps=False)
    return collector.transitions(num_envs)


def train_online(
    config: TSCACConfig,
    *,
    rounds: int = 3,
    steps_per_round: int = 20_000,
    num_envs: int = 64,
    progress: bool = True,
    **env_kwargs,
) -> tuple[TSCACPolicy, dict]:
    """Online TSCAC in the world: each round the current policy (uniform at first) collects
    `steps_per_round` steps with known probabilities, and both stages are refitted on all data so far.
    Stage two's pi_b is then the collecting policy, i.e. the weights are over sampled actions."""
    if rounds < 1 or steps_per_round < 1:
        raise ValueError("train_online: rounds and steps_per_round must be positive")

    class _Uniform:
        n_items = None

        def action_distribution(self, obs):
            n = np.asarray(obs["item_ids"]).shape[0]
            return np.full((n, self.n_items), 1.0 / self.n_items)

    from recsim_env.envs import SeqRecVectorEnv

    collector = _Uniform()
    collector.n_items = SeqRecVectorEnv(num_envs=1, **env_kwargs).user_model.n_items
    pieces: list[Transitions] = []
    history = []
    policy, stats = None, {}
    for round_ in range(rounds):
        pieces.append(
            collect_transitions(
                collector,
                steps=steps_per_round,
                seed=config.seed * 1000 + round_,
                num_envs=num_envs,
                history_len=config.history_len,
                **env_kwargs,
            )
        )
        data = _concatenate(pieces)
        policy, stats = train(dataclasses.replace(config, seed=config.seed + round_), data, progress=progress)
        history.append(
            {name: float(data.reward[-steps_per_round:, j].mean()) for j, name in enumerate(SIGNALS)}
        )
        collector = policy
    stats["collected_rates"] = history
    return policy, stats


def world_rates(
    policy, *, n_episodes: int, seed: int = 0, num_envs: int = 64, deterministic: bool = False, **env_kwargs
) -> dict[str, float]:
    """Per-step mean of every signal of `policy` rolled out in `SeqRec-v0` over `n_episodes` episodes (truth)."""
    from recsim_env.envs import SeqRecVectorEnv

    if n_episodes < 1:
        raise ValueError(f"argument 'n_episodes' must be positive, got {n_episodes}")
    env = SeqRecVectorEnv(num_envs=num_envs, **env_kwargs)
    rates = _SignalTotals(num_envs, len(env.signals))
    run_episodes(
        env,
        policy=policy,
        observer=rates,
        seed=seed,
        deterministic=deterministic,
        n_episodes=n_episodes,
        quota="first_done",
    )
    return {name: float(rates.totals[j] / rates.steps) for j, name in enumerate(env.signals)}


# ------------------------------------------------------------------------------- rollout observers
class _Collector(StepObserver):
    """`collect_transitions`' policy and observer: samples an item from the policy's distribution and
    keeps every observation as a state row, every live step as a transition with its propensity."""

    def __init__(self, policy, n_items: int, rng: np.random.Generator) -> None:
        self.policy, self.n_items, self.rng = policy, n_items, rng
        self.item_ids: list[np.ndarray] = []  # observations, one row per sub-env and step
        self.feedback: list[np.ndarray] = []
        self.state, self.next_state, self.action = [], [], []  # transitions, one row per live step
        self.reward, self.done, self.propensity = [], [], []

    def on_reset(self, obs, info) -> None:
        num_envs = len(obs["item_ids"])
        self.current = np.arange(num_envs)  # row of each sub-env's current observation
        self.item_ids.append(obs["item_ids"].copy())
        self.feedback.append(obs["feedback"].copy())
        self.n_states = num_envs

    def act(self, obs) -> np.ndarray:
        self.probs = probs = np.atleast_2d(self.policy.action_distribution(obs))
        cdf = probs.cumsum(axis=1)
        u = self.rng.random((len(probs), 1)) * cdf[:, -1:]
        return np.minimum((cdf < u).sum(axis=1), self.n_items - 1)

    def on_step(self, step: VectorStep) -> None:
        obs, chosen = step.obs, step.actions
        rows = self.n_states + np.arange(len(chosen))
        self.item_ids.append(obs["item_ids"].copy())
        self.feedback.append(obs["feedback"].copy())
        self.n_states += len(chosen)
        live = np.flatnonzero(step.live)
        self.state.append(self.current[live])
        self.next_state.append(rows[live])
        self.action.append(chosen[live])
        self.reward.append(step.info["feedback"][live].astype(np.float32))
        self.done.append(step.done[live].astype(np.float32))
        self.propensity.append(self.probs[live, chosen[live]])
        self.current = rows

    def transitions(self, num_envs: int) -> Transitions:
        done_all = np.concatenate(self.done)
        done_all[-num_envs:] = 1.0  # cut episodes: no bootstrapping past the data
        return Transitions(
            item_ids=np.concatenate(self.item_ids).astype(np.int64),
            feedback=np.concatenate(self.feedback).astype(np.float32),
            state=np.concatenate(self.state),
            next_state=np.concatenate(self.next_state),
            action=np.concatenate(self.action).astype(np.int64),
            reward=np.concatenate(self.reward),
            done=done_all,
            propensity=np.concatenate(self.propensity).astype(np.float64),
            n_items=self.n_items,
        )


class _SignalTotals(StepObserver):
    """`world_rates`' observer: every signal's sum and the steps over the counted episodes."""

    def __init__(self, num_envs: int, n_signals: int) -> None:
        self.totals = np.zeros(n_signals)
        self.episode_totals = np.zeros((num_envs, n_signals))
        self.episode_steps = np.zeros(num_envs)
        self.steps = 0.0

    def on_step(self, step: VectorStep) -> None:
        self.episode_totals += np.where(step.live[:, None], step.info["feedback"], 0.0)
        self.episode_steps += step.live
        self.totals += self.episode_totals[step.counted].sum(axis=0)
        self.steps += self.episode_steps[step.counted].sum()
        self.episode_totals[step.done] = 0.0
        self.episode_steps[step.done] = 0.0
