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
fits the `agents.Policy` contract; the extractor is a GRU over that window. That is the `lts`
front end (`SeqRecLTS-v0`, Box observations); `Sim2RecConfig(env="seqrec")` selects the sequence
front end of `agents.sim2rec_seq` (`SeqRec-v0` Dict observations, a SASRec state encoder, training
on `SeqRecSimSet-v0` built from a simulator learned from world logs, evaluation in the world).

Losses (PPO, Schulman et al. 2017), per minibatch:
    ratio      = pi(a|s, z) / pi_old(a|s, z)
    L_clip     = -E[min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)]             (PPO eq. 7)
    L_value    = E[(V(s, z) - R)^2] / 2
    L_entropy  = -E[H(pi(.|s, z))]
    L_consist  = E_t ||z_t - mean_t' z_t'||^2  over the steps t' of t's episode (Sim2Rec, optional)
    L = L_clip + vf_coef L_value + ent_coef L_entropy + consistency_coef L_consist
with advantages A from GAE(gamma, lambda) (Schulman et al. 2016, eq. 16). With the native `SeqRec`
vector env (NEXT_STEP autoreset) the step after an episode ends only resets that env; it is masked
out of every expectation above.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import recsim_env  # noqa: F401  (registers the environments)
from agents.policy import open_policy, save_policy
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.encoders.trainer import autocast, resolve_device
from recsim_env.envs.lts import SIM2REC_TEST_DOMAIN, SIM2REC_TRAIN_DOMAINS
from recsim_env.errors import CheckpointError

VARIANTS = ("sim2rec", "universal", "direct", "oracle")
MAX_NETWORK_SIZE = 10_000_000
"""Largest width or catalogue a saved network may declare (a file must not make `load` allocate at will)."""
ENVS = ("lts", "seqrec")


@dataclass(frozen=True, kw_only=True)
class Sim2RecConfig:
    """Everything that defines a Sim2Rec (or baseline) training run."""

    variant: str = "sim2rec"
    """`sim2rec` (context extractor), `universal`, `direct` or `oracle` (see the module docstring)."""
    env: str = "lts"
    """`lts`: `SeqRecLTS-v0` (Box observations); `seqrec`: the `SeqRec-v0` family (Dict observations,
    trained on `SeqRecSimSet-v0` from a learned simulator; see `agents.sim2rec_seq`)."""
    train_domains: tuple[float, ...] = SIM2REC_TRAIN_DOMAINS
    """`lts`: choc_mean of the training simulators (`SeqRecLTS-v0` domains)."""
    direct_domain: float = 8.0
    """`lts`: the one training simulator of DIRECT."""
    simulator: str | None = None
    """`seqrec`: directory of the base learned simulator (None: `default_world_simulator()`)."""
    simset: dict = field(default_factory=dict)
    """`seqrec`: `SimSetConfig` fields (ranges of the hidden parameters); empty: its defaults."""
    d_model: int = 32
    """`seqrec`: width of the SASRec state encoder."""
    n_layers: int = 1
    """`seqrec`: self-attention blocks of the SASRec state encoder."""
    rollout_steps: int = 32
    """`seqrec`: steps per env per PPO iteration (`lts` rolls out exactly one episode)."""
    window: int = 20
    """Steps of history the extractor reads (`lts`: stacked observations; `seqrec`: the last
    `window` (item, feedback) pairs of the observation's history)."""
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
    """Extra environment arguments (`SeqRecLTS-v0`'s, e.g. {"time_budget": 60}, or `SeqRec-v0`'s)."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"Sim2RecConfig.variant must be one of {list(VARIANTS)}, got {self.variant!r}")
        if self.env not in ENVS:
            raise ValueError(f"Sim2RecConfig.env must be one of {list(ENVS)}, got {self.env!r}")
        positive = ("window", "context_dim", "hidden_dim", "num_envs", "total_timesteps")
        for name in positive + ("d_model", "n_layers", "rollout_steps"):
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
        """Steps per env per iteration. `lts`: exactly one episode (the time budget), so that each
        env's steps in a rollout belong to one user; `seqrec`: `rollout_steps` (episodes end at
        different times; the consistency loss then groups the steps by episode)."""
        if self.env == "seqrec":
            return self.rollout_steps
        return int(self.env_kwargs.get("time_budget", 140))

    @property
    def iterations(self) -> int:
        return max(1, self.total_timesteps // (self.num_envs * self.num_steps))


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


class ActorCritic(nn.Module):
    """Actor and critic MLPs over features; a subclass builds its front end, then calls `add_heads`,
    and implements `features`, `as_input`, `manifest`, `from_space` and `from_manifest`."""

    def add_heads(self, in_dim: int, n_actions: int, hidden_dim: int) -> None:
        h = hidden_dim
        self.actor = nn.Sequential(
            _layer(in_dim, h), nn.Tanh(), _layer(h, h), nn.Tanh(), _layer(h, n_actions, std=0.01)
        )
        self.critic = nn.Sequential(
            _layer(in_dim, h), nn.Tanh(), _layer(h, h), nn.Tanh(), _layer(h, 1, std=1.0)
        )

    def features(self, obs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Input of actor and critic `[B, H]`, and the per-step contexts `[B, W, C]` (Sim2Rec) or None."""
        raise NotImplementedError

    def get_value(self, obs) -> torch.Tensor:
        return self.critic(self.features(obs)[0]).squeeze(-1).float()

    def get_action_and_value(self, obs, action: torch.Tensor | None = None):
        features, contexts = self.features(obs)
        distribution = torch.distributions.Categorical(logits=self.actor(features).float())
        if action is None:
            action = distribution.sample()
        value = self.critic(features).squeeze(-1).float()
        return action, distribution.log_prob(action), distribution.entropy(), value, contexts


class Sim2RecNetwork(ActorCritic):
    """`SeqRecLTS-v0` front end: extractor (GRU over the window of observations, Sim2Rec only),
    actor and critic over (latest observation, z)."""

    def __init__(self, obs_dim: int, n_actions: int, config: Sim2RecConfig) -> None:
        super().__init__()
        self.use_context = config.variant == "sim2rec"
        context_dim = config.context_dim if self.use_context else 0
        if self.use_context:
            self.extractor = nn.GRU(obs_dim, config.context_dim, batch_first=True)
        self.add_heads(obs_dim + context_dim, n_actions, config.hidden_dim)

    def context(self, window: torch.Tensor) -> torch.Tensor:
        """[B, W, obs] -> [B, W, context]: z after each step of the window (the last is z_t)."""
        contexts, _ = self.extractor(window)
        return contexts

    def features(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        latest = window[:, -1]
        if not self.use_context:
            return latest, None
        contexts = self.context(window)
        return torch.cat([latest, contexts[:, -1]], dim=-1), contexts

    @staticmethod
    def as_input(obs, device: torch.device) -> tuple[torch.Tensor, bool]:
        """A window `[W, obs]` or a batch `[N, W, obs]` as a batched tensor, and whether it was single."""
        array = np.asarray(obs, dtype=np.float32)
        single = array.ndim == 2
        return torch.as_tensor(array[None] if single else array, device=device), single

    def manifest(self) -> dict:
        return {"n_items": self.actor[-1].out_features, "obs_dim": self.actor[0].in_features}

    @classmethod
    def from_space(cls, space: gym.spaces.Box, n_actions: int, config: Sim2RecConfig) -> Sim2RecNetwork:
        return cls(space.shape[1], n_actions, config)

    @classmethod
    def from_manifest(cls, config: Sim2RecConfig, manifest: dict) -> Sim2RecNetwork:
        context = config.context_dim if config.variant == "sim2rec" else 0
        return cls(manifest["obs_dim"] - context, manifest["n_items"], config)


def network_class(config: Sim2RecConfig) -> type[ActorCritic]:
    """The front end of `config.env` (the `seqrec` one imports SB3 and the simulators, so lazily)."""
    if config.env == "seqrec":
        from agents.sim2rec_seq import SequenceSim2RecNetwork

        return SequenceSim2RecNetwork
    return Sim2RecNetwork


class Sim2RecPolicy:
    """A trained Sim2Rec (or baseline) network behind the `agents.Policy` contract.

    Observations: `lts`, the windows of `make_env(config, ...)`, `[W, obs]` for one user, `[N, W, obs]`
    for a batch; `seqrec`, `SeqRec-v0` Dict observations (single or batched; ORACLE also needs the
    `hidden_parameters` entry of `agents.sim2rec_seq`).
    """

    kind = "sim2rec"

    def __init__(self, network: ActorCritic, config: Sim2RecConfig, n_items: int) -> None:
        self.network = network.eval()
        self.config = config
        self.n_items = n_items
        self.slate_size = 1
        self.seed(config.seed)

    def seed(self, seed: int | None) -> None:
        """Reset the generator `act` samples with (`agents.rollout_policy` calls this)."""
        self._generator = torch.Generator().manual_seed(self.config.seed if seed is None else seed)

    @torch.inference_mode()
    def action_distribution(self, obs) -> np.ndarray:
        """[N, n_items] (or [n_items]) probabilities of each item."""
        device = next(self.network.parameters()).device
        batch, single = self.network.as_input(obs, device)
        with autocast(device):
            features, _ = self.network.features(batch)
            logits = self.network.actor(features)
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return probs[0] if single else probs

    def act(self, obs, deterministic: bool = False):
        """The item to recommend (an int for one observation, [N] for a batch)."""
        probs = self.action_distribution(obs)
        batch = np.atleast_2d(probs)
        if deterministic:
            actions = batch.argmax(axis=1)
        else:
            draws = torch.multinomial(torch.as_tensor(batch), 1, generator=self._generator)
            actions = draws[:, 0].numpy()
        return int(actions[0]) if probs.ndim == 1 else actions

    def save(self, path: str | os.PathLike) -> None:
        """Write the policy artifact `path`: `config.json`, `weights.safetensors` and `policy.json`."""

        def write(tmp: Path) -> None:
            write_json(tmp / "config.json", dataclasses.asdict(self.config))
            write_tensors(tmp / "weights.safetensors", self.network.state_dict())

        save_policy(path, self.kind, self.network.manifest(), write)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> Sim2RecPolicy:
        """Load a policy written by `save`; a wrong kind or a damaged file raises `CheckpointError`."""
        return cls.from_artifact(*open_policy(path, cls.kind), device=device)

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict, device: str = "cpu") -> Sim2RecPolicy:
        where = artifact.root / "policy.json"
        config = dataclass_from_json(Sim2RecConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json"))
        shape = check_fields(manifest["config"], dict.fromkeys(manifest["config"], int), where=str(where))
        if any(value < 0 or value > MAX_NETWORK_SIZE for value in shape.values()):
            raise CheckpointError(f"{where}: network sizes {shape} outside [0, {MAX_NETWORK_SIZE}]")
        try:
            network = network_class(config).from_manifest(config, shape)
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{where}: cannot build the network ({error!r})") from None
        state = artifact.read_tensors("weights.safetensors", framework="pt")
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(f"{artifact.root / 'weights.safetensors'}: weights do not fit: {error}") from None
        return cls(network.to(resolve_device(device)), config, shape["n_items"])


def make_vector_env(config: Sim2RecConfig) -> gym.vector.VectorEnv:
    """The training environments: `config.num_envs` users at a time, each episode's user drawn from
    one simulator of the variant's set."""
    if config.env == "seqrec":
        from agents.sim2rec_seq import make_training_env

        return make_training_env(config)
    return gym.vector.SyncVectorEnv(
        [lambda: make_env(config, config.domains) for _ in range(config.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def _tree(fn: Callable, obs):
    """`fn` applied to a tensor, or to each tensor of a dict of them (Dict observations)."""
    return {key: fn(value) for key, value in obs.items()} if isinstance(obs, dict) else fn(obs)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if mask is None else (x * mask).sum() / mask.sum().clamp_min(1.0)


def _normalise(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return (x - x.mean()) / (x.std() + 1e-8)
    mean = _masked_mean(x, mask)
    std = _masked_mean((x - mean) ** 2, mask).sqrt()
    return (x - mean) / (std + 1e-8)


def _consistency(z: torch.Tensor, segments: torch.Tensor | None, mask: torch.Tensor | None, T: int):
    """L_consist = E_t ||z_t - mean of z over t's episode||^2 for z `[T * n, C]` in (step, env) order.

    `segments` None: each env's T steps are one episode (`lts`); else `[T * n]` episode ids.
    """
    z = z.float()
    if segments is None:
        z = z.reshape(T, -1, z.shape[-1])
        return ((z - z.mean(dim=0, keepdim=True).detach()) ** 2).sum(-1).mean()
    ids = torch.unique(segments, return_inverse=True)[1]
    n_segments = int(ids.max()) + 1
    sums = torch.zeros(n_segments, z.shape[-1], device=z.device).index_add_(0, ids, z * mask[:, None])
    counts = torch.zeros(n_segments, device=z.device).index_add_(0, ids, mask)
    means = (sums / counts.clamp_min(1.0)[:, None]).detach()
    return _masked_mean(((z - means[ids]) ** 2).sum(-1), mask)


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
    envs = make_vector_env(config)
    # NEXT_STEP autoreset (the native SeqRec vector env): the step after an episode ends only
    # resets that env; it is left out of every loss.
    dummy_steps = envs.metadata.get("autoreset_mode") == gym.vector.AutoresetMode.NEXT_STEP
    n_actions = int(envs.single_action_space.n)
    network = network_class(config).from_space(envs.single_observation_space, n_actions, config).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate, eps=1e-5)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    T, N = config.num_steps, config.num_envs
    next_obs, _ = envs.reset(seed=config.seed)
    next_obs = network.as_input(next_obs, device)[0]
    # ---- rollout storage, shape (steps, envs) + ...
    observations = _tree(lambda x: torch.zeros((T,) + x.shape, dtype=x.dtype, device=device), next_obs)
    actions = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs = torch.zeros((T, N), device=device)
    rewards = torch.zeros((T, N), device=device)
    dones = torch.zeros((T, N), device=device)
    values = torch.zeros((T, N), device=device)

    next_done = torch.zeros(N, device=device)
    episode_returns: list[float] = []
    running = np.zeros(N)
    bar = tqdm(range(config.iterations), desc=f"sim2rec[{config.variant}]", disable=not progress)
    for iteration in bar:
        for group in optimizer.param_groups:  # linear learning-rate annealing
            group["lr"] = config.learning_rate * (1.0 - iteration / config.iterations)
        # ---- collect experience
        for t in range(T):
            if isinstance(next_obs, dict):
                for key, value in next_obs.items():
                    observations[key][t] = value
            else:
                observations[t] = next_obs
            dones[t] = next_done
            with torch.no_grad(), autocast(device):
                features, _ = network.features(next_obs)
                logits = network.actor(features).float()
                action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
                logprobs[t] = torch.distributions.Categorical(logits=logits).log_prob(action)
                values[t] = network.critic(features).squeeze(-1).float()
            actions[t] = action
            obs, reward, terminated, truncated, _ = envs.step(action.cpu().numpy())
            running += reward
            done = terminated | truncated
            episode_returns.extend(running[done].tolist())
            running[done] = 0.0
            rewards[t] = torch.as_tensor(reward * config.reward_scale, dtype=torch.float32, device=device)
            next_obs = network.as_input(obs, device)[0]
            next_done = torch.as_tensor(done, dtype=torch.float32, device=device)

        # ---- GAE (Schulman et al. 2016, eq. 16); done at t ends the episode at t (the SAME_STEP
        # reset observation, or the NEXT_STEP dummy step that follows, is not bootstrapped from)
        with torch.no_grad(), autocast(device):
            next_value = network.get_value(next_obs)
        with torch.no_grad():
            advantages = torch.zeros_like(rewards)
            last = torch.zeros(N, device=device)
            for t in reversed(range(T)):
                not_done = 1.0 - (dones[t + 1] if t + 1 < T else next_done)
                following = values[t + 1] if t + 1 < T else next_value
                delta = rewards[t] + config.gamma * following * not_done - values[t]
                last = delta + config.gamma * config.gae_lambda * not_done * last
                advantages[t] = last
            returns = advantages + values
        # A NEXT_STEP dummy step is exactly one whose observation follows a done; episodes are the
        # runs of steps between dones (ids unique per env).
        valid = 1.0 - dones if dummy_steps else None
        segments = torch.cumsum(dones, 0) + (T + 1) * torch.arange(N, device=device) if dummy_steps else None

        # ---- PPO update; minibatches are sets of envs, so each keeps its episodes' steps together
        env_ids = np.arange(N)
        rng = np.random.default_rng(config.seed + iteration)
        stats = {}
        for _ in range(config.update_epochs):
            rng.shuffle(env_ids)
            for chunk in np.array_split(env_ids, config.num_minibatches):
                mb = torch.as_tensor(chunk, device=device)
                mask = valid[:, mb].reshape(-1) if valid is not None else None
                with autocast(device):
                    _, new_logprob, entropy, new_value, contexts = network.get_action_and_value(
                        _tree(lambda x, mb=mb: x[:, mb].reshape((-1,) + x.shape[2:]), observations),
                        actions[:, mb].reshape(-1),
                    )
                mb_adv = _normalise(advantages[:, mb].reshape(-1), mask)
                ratio = (new_logprob - logprobs[:, mb].reshape(-1)).exp()
                policy_loss = _masked_mean(
                    torch.max(
                        -mb_adv * ratio, -mb_adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
                    ),
                    mask,
                )  # PPO eq. 7
                value_loss = 0.5 * _masked_mean((new_value - returns[:, mb].reshape(-1)) ** 2, mask)
                entropy_loss = -_masked_mean(entropy, mask)
                loss = policy_loss + config.vf_coef * value_loss + config.ent_coef * entropy_loss
                if contexts is not None and config.consistency_coef > 0:
                    # z_t of one episode should agree: the simulator does not change within it.
                    episodes = segments[:, mb].reshape(-1) if segments is not None else None
                    consistency = _consistency(contexts[:, -1], episodes, mask, T)
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
