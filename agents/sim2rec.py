"""Sim2Rec: a context-aware policy trained across a set of simulators (Chen et al., ICDE 2023).

"A Simulator-based Decision-Making Approach to Optimize Real-World Long-term User Engagement in
Sequential Recommender Systems". The user's behaviour differs between simulators by hidden
parameters; an environment-parameter extractor reads the recent history of (observation, action,
reward) and outputs a context vector z_t, and actor and critic are conditioned on (state, z_t).
Training runs PPO over episodes that each sample a simulator from the set, so the extractor learns,
through the policy loss alone (plus an optional consistency loss), to infer what kind of user it
faces. Baselines in the same code:

- DIRECT: PPO in one simulator, no extractor.
- UNIVERSAL: PPO across the simulator set (domain randomisation), no extractor.
- ORACLE: PPO across the set with the true hidden parameters in the input: an upper bound.

The history is part of the observation (a window of the last `window` observations, stacked by
Gymnasium's `FrameStackObservation`), so the policy is a plain function of its observation and
fits the `agents.Policy` contract; the extractor is a GRU over that window.

Losses (PPO, Schulman et al. 2017), per minibatch:
    ratio      = pi(a|s, z) / pi_old(a|s, z)
    L_clip     = -E[min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)]             (PPO eq. 7)
    L_value    = E[(V(s, z) - R)^2] / 2
    L_entropy  = -E[H(pi(.|s, z))]
    L_consist  = E_t ||z_t - mean_t' z_t'||^2  over the steps of one episode   (Sim2Rec, optional)
    L = L_clip + vf_coef L_value + ent_coef L_entropy + consistency_coef L_consist
with advantages A from GAE(gamma, lambda) (Schulman et al. 2016, eq. 16).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import recsim_env  # noqa: F401  (registers the environments)
from agents.policy import read_manifest, write_atomic, write_manifest
from recsim_env.envs.lts import SIM2REC_TEST_DOMAIN, SIM2REC_TRAIN_DOMAINS

VARIANTS = ("sim2rec", "universal", "direct", "oracle")


@dataclass(frozen=True, kw_only=True)
class Sim2RecConfig:
    """Everything that defines a Sim2Rec (or baseline) training run."""

    variant: str = "sim2rec"
    """`sim2rec` (context extractor), `universal`, `direct` or `oracle` (see the module docstring)."""
    train_domains: tuple[float, ...] = SIM2REC_TRAIN_DOMAINS
    """choc_mean of the training simulators (`SeqRecLTS-v0` domains)."""
    direct_domain: float = 8.0
    """The one training simulator of DIRECT."""
    window: int = 20
    """Observations of history the extractor reads."""
    context_dim: int = 16
    """Width of the context vector z."""
    hidden_dim: int = 64
    """Width of the actor and critic MLPs."""
    num_envs: int = 16
    """Parallel episodes per PPO iteration."""
    total_timesteps: int = 200_000
    """Environment steps of training."""
    learning_rate: float = 1e-3
    """Adam learning rate (annealed linearly to 0)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_coef: float = 0.2
    """PPO clipping epsilon."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    consistency_coef: float = 0.8
    """Weight of the context consistency loss (0 disables it; Sim2Rec uses 0.8)."""
    update_epochs: int = 4
    """PPO epochs per iteration."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    max_grad_norm: float = 0.5
    """Gradient clipping."""
    reward_scale: float = 0.1
    """Rewards are multiplied by this for the value targets (engagement is ~1-20 per step)."""
    seed: int = 0
    """Seed of the environments, the network initialisation and the action sampling."""
    device: str = "cpu"
    """`cpu`, `cuda` or `auto` (CUDA when present)."""
    env_kwargs: dict = field(default_factory=dict)
    """Extra `SeqRecLTS-v0` arguments (e.g. {"time_budget": 60})."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"Sim2RecConfig.variant must be one of {list(VARIANTS)}, got {self.variant!r}")
        for name in ("window", "context_dim", "hidden_dim", "num_envs", "total_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"Sim2RecConfig.{name} must be positive, got {getattr(self, name)}")
        if self.num_envs % self.num_minibatches:
            raise ValueError("Sim2RecConfig.num_envs must be divisible by num_minibatches")
        if not self.train_domains:
            raise ValueError("Sim2RecConfig.train_domains must not be empty")

    @property
    def domains(self) -> tuple[float, ...]:
        """The simulators this variant trains on."""
        return (self.direct_domain,) if self.variant == "direct" else tuple(self.train_domains)

    @property
    def num_steps(self) -> int:
        """Steps per env per iteration: exactly one episode (the time budget), so that each env's
        steps in a rollout belong to one user, as the consistency loss assumes."""
        return int(self.env_kwargs.get("time_budget", 140))

    @property
    def iterations(self) -> int:
        return max(1, self.total_timesteps // (self.num_envs * self.num_steps))


def resolve_device(device: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class OracleObservation(gym.ObservationWrapper):
    """Appends the user's hidden (choc_mean / 20, memory discount, sensitivity) to the observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        low = np.concatenate([env.observation_space.low, np.zeros(3, dtype=np.float32)])
        high = np.concatenate([env.observation_space.high, np.full(3, np.inf, dtype=np.float32)])
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation):
        hidden = self.env.unwrapped.hidden_parameters() * np.array([1 / 20, 1, 1], dtype=np.float32)
        return np.concatenate([observation, hidden]).astype(np.float32)


def make_env(config: Sim2RecConfig, choc_means: float | Sequence[float]) -> gym.Env:
    """One `SeqRecLTS-v0` as the variant sees it: a history window (+ hidden parameters for ORACLE)."""
    env = gym.make("SeqRecLTS-v0", choc_means=choc_means, **config.env_kwargs)
    if config.variant == "oracle":
        env = OracleObservation(env)
    return gym.wrappers.FrameStackObservation(env, config.window, padding_type="zero")


def _layer(in_dim: int, out_dim: int, std: float = np.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class Sim2RecNetwork(nn.Module):
    """Extractor (GRU over the window, Sim2Rec only), actor and critic over (latest observation, z)."""

    def __init__(self, obs_dim: int, n_actions: int, config: Sim2RecConfig) -> None:
        super().__init__()
        self.use_context = config.variant == "sim2rec"
        context_dim = config.context_dim if self.use_context else 0
        if self.use_context:
            self.extractor = nn.GRU(obs_dim, config.context_dim, batch_first=True)
        in_dim = obs_dim + context_dim
        h = config.hidden_dim
        self.actor = nn.Sequential(
            _layer(in_dim, h), nn.Tanh(), _layer(h, h), nn.Tanh(), _layer(h, n_actions, std=0.01)
        )
        self.critic = nn.Sequential(
            _layer(in_dim, h), nn.Tanh(), _layer(h, h), nn.Tanh(), _layer(h, 1, std=1.0)
        )

    def context(self, window: torch.Tensor) -> torch.Tensor:
        """[B, W, obs] -> [B, W, context]: z after each step of the window (the last is z_t)."""
        contexts, _ = self.extractor(window)
        return contexts

    def features(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Input of actor and critic, and the per-step contexts (for the consistency loss)."""
        latest = window[:, -1]
        if not self.use_context:
            return latest, None
        contexts = self.context(window)
        return torch.cat([latest, contexts[:, -1]], dim=-1), contexts

    def get_value(self, window: torch.Tensor) -> torch.Tensor:
        return self.critic(self.features(window)[0]).squeeze(-1)

    def get_action_and_value(self, window: torch.Tensor, action: torch.Tensor | None = None):
        features, contexts = self.features(window)
        distribution = torch.distributions.Categorical(logits=self.actor(features))
        if action is None:
            action = distribution.sample()
        value = self.critic(features).squeeze(-1)
        return action, distribution.log_prob(action), distribution.entropy(), value, contexts


class Sim2RecPolicy:
    """A trained Sim2Rec (or baseline) network behind the `agents.Policy` contract.

    Observations are the windows of `make_env(config, ...)`: `[W, obs]` for one user, `[N, W, obs]`
    for a batch.
    """

    kind = "agents.sim2rec:Sim2RecPolicy"

    def __init__(self, network: Sim2RecNetwork, config: Sim2RecConfig, n_items: int) -> None:
        self.network = network.eval()
        self.config = config
        self.n_items = n_items
        self.slate_size = 1
        self._generator = torch.Generator().manual_seed(config.seed)

    def _batch(self, obs) -> tuple[torch.Tensor, bool]:
        array = np.asarray(obs, dtype=np.float32)
        single = array.ndim == 2
        device = next(self.network.parameters()).device
        return torch.as_tensor(array[None] if single else array, device=device), single

    @torch.inference_mode()
    def action_distribution(self, obs) -> np.ndarray:
        """[N, n_items] (or [n_items]) probabilities of each document."""
        window, single = self._batch(obs)
        features, _ = self.network.features(window)
        probs = torch.softmax(self.network.actor(features).float(), dim=-1).cpu().numpy()
        return probs[0] if single else probs

    def act(self, obs, deterministic: bool = False):
        """The document to recommend (an int for one observation, [N] for a batch)."""
        probs = self.action_distribution(obs)
        batch = np.atleast_2d(probs)
        if deterministic:
            actions = batch.argmax(axis=1)
        else:
            draws = torch.multinomial(torch.as_tensor(batch), 1, generator=self._generator)
            actions = draws[:, 0].numpy()
        return int(actions[0]) if probs.ndim == 1 else actions

    def save(self, path: str | os.PathLike) -> None:
        """Write `config.json`, `weights.pt` and (last) `policy.json` into directory `path`, each atomically."""
        path = Path(path)
        write_atomic(path / "config.json", json.dumps(dataclasses.asdict(self.config), indent=2).encode())
        buffer = io.BytesIO()
        torch.save(self.network.state_dict(), buffer)
        write_atomic(path / "weights.pt", buffer.getvalue())
        obs_dim = self.network.actor[0].in_features
        write_manifest(path, self.kind, {"n_items": self.n_items, "obs_dim": obs_dim})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> Sim2RecPolicy:
        """Load a policy written by `save`; a wrong kind or a damaged file raises `ValueError`."""
        path = Path(path)
        try:
            manifest = read_manifest(path)
            fields = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a saved Sim2Rec policy ({error})") from None
        if manifest["kind"] != cls.kind:
            raise ValueError(f"{path}/policy.json: kind {manifest['kind']!r} is not {cls.kind!r}")
        fields["train_domains"] = tuple(fields["train_domains"])
        config = Sim2RecConfig(**fields)
        context = config.context_dim if config.variant == "sim2rec" else 0
        n_items, obs_dim = manifest["config"]["n_items"], manifest["config"]["obs_dim"]
        network = Sim2RecNetwork(obs_dim - context, n_items, config)
        try:
            state = torch.load(path / "weights.pt", map_location=resolve_device(device), weights_only=True)
            network.load_state_dict(state)
        except Exception as error:  # a truncated or foreign file
            raise ValueError(f"{path}/weights.pt: cannot load the weights ({error})") from None
        return cls(network.to(resolve_device(device)), config, n_items)


def train(
    config: Sim2RecConfig,
    *,
    progress: bool = True,
    on_iteration: Callable[[int, dict], None] | None = None,
) -> Sim2RecPolicy:
    """Train with PPO across the variant's simulators; returns the policy. Deterministic on CPU."""
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    # ---- environments: each episode samples one simulator of the set
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(config, config.domains) for _ in range(config.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs_shape = envs.single_observation_space.shape  # (W, obs)
    n_actions = int(envs.single_action_space.n)
    network = Sim2RecNetwork(obs_shape[1], n_actions, config).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate, eps=1e-5)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    # ---- rollout storage, shape (steps, envs) + ...
    T, N = config.num_steps, config.num_envs
    observations = torch.zeros((T, N) + obs_shape, device=device)
    actions = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs = torch.zeros((T, N), device=device)
    rewards = torch.zeros((T, N), device=device)
    dones = torch.zeros((T, N), device=device)
    values = torch.zeros((T, N), device=device)

    next_obs, _ = envs.reset(seed=config.seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
    next_done = torch.zeros(N, device=device)
    episode_returns: list[float] = []
    running = np.zeros(N)
    bar = tqdm(range(config.iterations), desc=f"sim2rec[{config.variant}]", disable=not progress)
    for iteration in bar:
        for group in optimizer.param_groups:  # linear learning-rate annealing
            group["lr"] = config.learning_rate * (1.0 - iteration / config.iterations)
        # ---- collect experience
        for t in range(T):
            observations[t], dones[t] = next_obs, next_done
            with torch.no_grad():
                features, _ = network.features(next_obs)
                logits = network.actor(features)
                action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
                logprobs[t] = torch.distributions.Categorical(logits=logits).log_prob(action)
                values[t] = network.critic(features).squeeze(-1)
            actions[t] = action
            obs, reward, terminated, truncated, _ = envs.step(action.cpu().numpy())
            running += reward
            done = terminated | truncated
            episode_returns.extend(running[done].tolist())
            running[done] = 0.0
            rewards[t] = torch.as_tensor(reward * config.reward_scale, dtype=torch.float32, device=device)
            next_obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
            next_done = torch.as_tensor(done, dtype=torch.float32, device=device)

        # ---- GAE (Schulman et al. 2016, eq. 16); SAME_STEP autoreset: done at t ends the episode at t
        with torch.no_grad():
            next_value = network.get_value(next_obs)
            advantages = torch.zeros_like(rewards)
            last = torch.zeros(N, device=device)
            for t in reversed(range(T)):
                not_done = 1.0 - (dones[t + 1] if t + 1 < T else next_done)
                following = values[t + 1] if t + 1 < T else next_value
                delta = rewards[t] + config.gamma * following * not_done - values[t]
                last = delta + config.gamma * config.gae_lambda * not_done * last
                advantages[t] = last
            returns = advantages + values

        # ---- PPO update; minibatches are sets of envs, so each keeps its episode's steps together
        env_ids = np.arange(N)
        rng = np.random.default_rng(config.seed + iteration)
        stats = {}
        for _ in range(config.update_epochs):
            rng.shuffle(env_ids)
            for chunk in np.array_split(env_ids, config.num_minibatches):
                mb = torch.as_tensor(chunk, device=device)
                _, new_logprob, entropy, new_value, contexts = network.get_action_and_value(
                    observations[:, mb].reshape((-1,) + obs_shape), actions[:, mb].reshape(-1)
                )
                mb_adv = advantages[:, mb].reshape(-1)
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                ratio = (new_logprob - logprobs[:, mb].reshape(-1)).exp()
                policy_loss = torch.max(
                    -mb_adv * ratio, -mb_adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
                ).mean()  # PPO eq. 7
                value_loss = 0.5 * ((new_value - returns[:, mb].reshape(-1)) ** 2).mean()
                entropy_loss = -entropy.mean()
                loss = policy_loss + config.vf_coef * value_loss + config.ent_coef * entropy_loss
                if contexts is not None and config.consistency_coef > 0:
                    # z_t of one episode should agree: the simulator does not change within it.
                    z = contexts[:, -1].reshape(T, len(chunk), -1)
                    consistency = ((z - z.mean(dim=0, keepdim=True).detach()) ** 2).sum(-1).mean()
                    loss = loss + config.consistency_coef * consistency
                    stats["consistency"] = float(consistency.detach())
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), config.max_grad_norm)
                optimizer.step()
        stats |= {
            "policy_loss": float(policy_loss.detach()),
            "value_loss": float(value_loss.detach()),
            "entropy": float(-entropy_loss.detach()),
            "episode_return": float(np.mean(episode_returns[-N:])) if episode_returns else float("nan"),
        }
        bar.set_postfix(ret=f"{stats['episode_return']:.1f}")
        if on_iteration is not None:
            on_iteration(iteration, stats)
    envs.close()
    return Sim2RecPolicy(network, config, n_actions)


def evaluate(
    policy: Sim2RecPolicy,
    *,
    choc_mean: float = SIM2REC_TEST_DOMAIN,
    episodes: int = 32,
    seed: int = 10_000,
    deterministic: bool = False,
) -> np.ndarray:
    """Cumulative engagement of `episodes` users of domain `choc_mean` (held-out 14 by default).

    Policies act stochastically by default, as they were trained: in this environment the best
    behaviour mixes clickbait and wholesome documents, and a mixture's argmax is another policy.
    """
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(policy.config, choc_mean) for _ in range(episodes)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs, _ = envs.reset(seed=seed)
    totals = np.zeros(episodes)
    finished = np.zeros(episodes, dtype=bool)
    while not finished.all():
        obs, reward, terminated, truncated, _ = envs.step(policy.act(obs, deterministic=deterministic))
        totals += np.where(finished, 0.0, reward)
        finished |= terminated | truncated
    envs.close()
    return totals
