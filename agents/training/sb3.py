"""Stable-Baselines3 backend: PPO, A2C or DQN over `SequenceFeaturesExtractor`, and `SB3Policy`.

Run directory layout (`out/`), with no pickle anywhere (SB3's own `model.zip` and replay-buffer
pickles are never written or read):
- `policy/`: the `agents.Policy` artifact (kind "sb3"): the policy network's weights as safetensors
  and the config to rebuild it, so `agents.load_policy(out)` / `seqrec evaluate out` work.
- `state/`: the resumable training state (`--resume out`): the `TrainConfig`, the step and update
  counts, the optimiser state and, for DQN, the replay buffer, as JSON + safetensors.
- `logs/run-K/`: `progress.csv` and TensorBoard events of the K-th (re)start (SB3's logger), with
  `eval/mean_reward` every `eval_interval` steps.

Models are rebuilt from the config (as at the start of training) and their tensors loaded in.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

from agents.heads import sb3_policy_class
from agents.policy import POLICY_SUBDIR, DeviceLoadable, ProbabilityPolicy, save_policy
from agents.sb3 import SequenceFeaturesExtractor
from agents.sb3_vec_env import SeqRecSB3VecEnv
from agents.training.config import (
    SCHEDULE_HORIZON,
    UNLIMITED_STEPS,
    TrainConfig,
    TrainResult,
    environment_item_content,
    open_training_state,
    save_training_state,
)
from recsim_env.checkpoint import Artifact, check_fields, write_tensors, write_tree
from recsim_env.errors import ArgumentError, CheckpointError

SB3_ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER = "optimizer"
REPLAY = "replay_buffer"
DEFAULT_ALGO_CONFIG: dict[str, dict[str, Any]] = {
    # PPO: 8 envs x 256 steps = 2048 steps per update, SB3's default batch of experience.
    "ppo": {"n_steps": 256, "batch_size": 256},
    "a2c": {},
    # A 1M-transition buffer of dict observations would take gigabytes; 50k is plenty here.
    "dqn": {"buffer_size": 50_000, "learning_starts": 1_000},
}


class SB3Policy(ProbabilityPolicy, DeviceLoadable):
    """A trained SB3 model behind the `agents.Policy` contract.

    Actor-critic models (PPO, A2C) report their categorical policy `pi(a | s)`; DQN reports its
    greedy policy (one-hot on `argmax_a Q(s, a)`), since exploration belongs to training. Sampling
    uses the policy's own generator (`seed`), so rollouts are reproducible.

    Args:
        model: the SB3 model (only its `policy` network is used to act).
        algo: "ppo", "a2c" or "dqn".
        config: the `TrainConfig` that builds the model again on `load`.
    """

    kind = "sb3"

    def __init__(self, model: BaseAlgorithm, algo: str, config: TrainConfig, *, seed: int | None = 0) -> None:
        if not isinstance(model.action_space, spaces.Discrete):
            raise ValueError(f"SB3Policy needs a Discrete action space, got {model.action_space}")
        self.model = model
        self.algo = algo
        self.config = config
        self.name = f"sb3-{algo}"
        self.n_items = int(model.action_space.n)
        self.slate_size = 1
        self.model.policy.set_training_mode(False)
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        """Reset the sampling generator."""
        self.rng = np.random.default_rng(seed)

    def _probabilities(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        policy = self.model.policy
        obs = {key: value for key, value in batch.items() if key in policy.observation_space.spaces}
        with torch.no_grad():
            tensor, _ = policy.obs_to_tensor(obs)
            if self.algo == "dqn":
                q_values = policy.q_net(tensor)  # [N, n_items]
                probabilities = torch.nn.functional.one_hot(q_values.argmax(dim=1), self.n_items).double()
            else:
                probabilities = policy.get_distribution(tensor).distribution.probs.double()  # [N, n_items]
        probabilities = probabilities.cpu().numpy()
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def save(self, path: str | os.PathLike) -> None:
        config = {
            "algo": self.algo,
            "n_items": self.n_items,
            "train_config": policy_train_config(self.model, self.config).to_dict(),
        }
        save_policy(
            path,
            self.kind,
            config,
            lambda tmp: write_tensors(tmp / WEIGHTS_FILE, self.model.policy.state_dict()),
        )

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: Mapping[str, Any], device: str = "cpu") -> SB3Policy:
        where = artifact.root / "policy.json"
        fields = check_fields(
            manifest["config"], {"algo": str, "n_items": int, "train_config": dict}, where=str(where)
        )
        config = TrainConfig.from_dict(fields.get("train_config"), where=f"{where}: 'train_config'")
        if config.backend != "sb3" or fields.get("algo") != config.algo:
            raise CheckpointError(
                f"{where}: not an SB3 policy (backend {config.backend!r}, algo {fields.get('algo')!r})"
            )
        config = dataclasses.replace(config, device=device)
        env = _make_env(config, 1, config.seed)
        try:
            model = build_model(config, env, for_inference=True)
        finally:
            env.close()
        if int(model.action_space.n) != fields.get("n_items"):
            raise CheckpointError(
                f"{where}: n_items {fields.get('n_items')!r} differs from the environment's"
            )
        artifact.load_state_dict(model.policy, WEIGHTS_FILE)
        return cls(model, config.algo, config)


def policy_train_config(model: BaseAlgorithm, config: TrainConfig) -> TrainConfig:
    """`config` with the encoder as built (a pretrained checkpoint's config, not its path, which may
    move) and its item content source resolved: the policy's weights hold the encoder's, its item
    content buffers included."""
    encoder = next(m for m in model.policy.modules() if isinstance(m, SequenceFeaturesExtractor)).encoder
    return dataclasses.replace(
        config,
        encoder=encoder.name,
        encoder_config=encoder.config.to_dict(),
        encoder_checkpoint=None,
        item_content=config.content_source,  # a checkpoint's content (if any) is in the weights
    )


def _save_run(model: BaseAlgorithm, config: TrainConfig, out: Path) -> None:
    """Write the run's policy and its resumable training state (each artifact whole)."""
    SB3Policy(model, config.algo, config).save(out / POLICY_SUBDIR)
    progress = {
        "timesteps": int(model.num_timesteps),
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "episode_num": int(getattr(model, "_episode_num", 0)),
        "n_calls": int(getattr(model, "_n_calls", 0)),
    }

    def write(tmp: Path) -> None:
        write_tensors(tmp / WEIGHTS_FILE, model.policy.state_dict())
        write_tree(tmp, OPTIMIZER, model.policy.optimizer.state_dict())
        if config.algo == "dqn":
            write_tree(tmp, REPLAY, replay_buffer_state(model.replay_buffer))

    save_training_state(out, config, progress, write)


def replay_buffer_state(buffer) -> dict[str, Any]:
    """The filled part of an SB3 (dict) replay buffer as plain arrays."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    state: dict[str, Any] = {
        "pos": int(buffer.pos),
        "full": bool(buffer.full),
        "buffer_size": int(buffer.buffer_size),
    }
    for name in ("observations", "next_observations"):
        value = getattr(buffer, name)
        state[name] = (
            {key: array[:n] for key, array in value.items()} if isinstance(value, dict) else value[:n]
        )
    for name in ("actions", "rewards", "dones", "timeouts"):
        state[name] = getattr(buffer, name)[:n]
    return state


def restore_replay_buffer(buffer, state: Any, where: str) -> None:
    """Copy a saved replay buffer into `buffer`; shapes, dtypes and counts are checked first."""
    if not isinstance(state, dict) or state.get("buffer_size") != buffer.buffer_size:
        raise CheckpointError(
            f"{where}: replay buffer of another size than the config's {buffer.buffer_size}"
        )
    pos, full = state.get("pos"), state.get("full")
    if (
        not isinstance(full, bool)
        or isinstance(pos, bool)
        or not isinstance(pos, int)
        or not 0 <= pos < buffer.buffer_size + 1
    ):
        raise CheckpointError(f"{where}: replay buffer 'pos' / 'full' are not valid")
    n = buffer.buffer_size if full else pos
    pairs = []
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        target, saved = getattr(buffer, name), state.get(name)
        if isinstance(target, dict):
            if not isinstance(saved, dict) or set(saved) != set(target):
                raise CheckpointError(
                    f"{where}: replay buffer {name!r} has other keys than the observation space"
                )
            pairs += [(f"{name}.{key}", target[key], saved[key]) for key in target]
        else:
            pairs.append((name, target, saved))
    for name, target, saved in pairs:
        if (
            not isinstance(saved, np.ndarray)
            or saved.shape != (n, *target.shape[1:])
            or saved.dtype != target.dtype
        ):
            raise CheckpointError(
                f"{where}: replay buffer {name!r} must be {target.dtype} of shape {(n, *target.shape[1:])}"
            )
    for _, target, saved in pairs:
        target[:n] = saved
    buffer.pos, buffer.full = pos % buffer.buffer_size, full


def restore_training_state(model: BaseAlgorithm, artifact: Artifact, progress: Mapping[str, Any]) -> None:
    """Load weights, optimiser, counters and (DQN) replay buffer from a checked training state."""
    artifact.load_state_dict(model.policy, WEIGHTS_FILE)
    where = str(artifact.root / OPTIMIZER)
    optimizer_state = artifact.read_tree(OPTIMIZER, framework="pt")
    try:
        model.policy.optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{where}: optimiser state does not fit the model: {error}") from None
    for key, attribute in (
        ("timesteps", "num_timesteps"),
        ("n_updates", "_n_updates"),
        ("episode_num", "_episode_num"),
        ("n_calls", "_n_calls"),
    ):
        value = progress.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(
                f"{artifact.root / 'progress.json'}: {key!r} must be a non-negative integer"
            )
        if hasattr(model, attribute) or attribute == "num_timesteps":
            setattr(model, attribute, value)
    if isinstance(model, DQN):
        if artifact.has(f"{REPLAY}.json"):
            restore_replay_buffer(
                model.replay_buffer, artifact.read_tree(REPLAY), str(artifact.root / REPLAY)
            )


class _TimeBudget(BaseCallback):
    """Stops `learn` once `budget_s` seconds have passed."""

    def __init__(self, budget_s: float | None) -> None:
        super().__init__()
        self.budget_s = budget_s
        self.start = time.perf_counter()

    def _on_step(self) -> bool:
        return self.budget_s is None or time.perf_counter() - self.start < self.budget_s


class _SaveRun(BaseCallback):
    """Checkpoints the run after each evaluation (so a killed run resumes from its last evaluation)."""

    def __init__(self, config: TrainConfig, out: Path) -> None:
        super().__init__()
        self.config = config
        self.out = out

    def _on_step(self) -> bool:
        _save_run(self.model, self.config, self.out)
        return True


def _make_env(config: TrainConfig, n_envs: int, seed: int):
    """`n_envs` sub-envs seeded `seed + i`: `SeqRec-v0` batched in one call, other ids in SB3's loop."""
    import recsim_env  # noqa: F401  (registers the environments)

    if config.env_id == "SeqRec-v0":
        env = SeqRecSB3VecEnv(n_envs, config.env_config)
        env.seed(seed)
        return env
    return make_vec_env(lambda: gym.make(config.env_id, **config.env_config), n_envs=n_envs, seed=seed)


def _policy_kwargs(config: TrainConfig) -> dict[str, Any]:
    extractor = {
        "encoder": config.encoder.lower(),
        "encoder_config": dict(config.encoder_config),
        "freeze": config.freeze_encoder,
        "feedback_transform": config.feedback_transform,
    }
    if config.encoder_checkpoint is not None:
        extractor["checkpoint"] = config.encoder_checkpoint
    if config.content_source == "catalogue":
        extractor["item_content"] = environment_item_content(config.env_id, config.env_config)
    return {"features_extractor_class": SequenceFeaturesExtractor, "features_extractor_kwargs": extractor}


def build_model(config: TrainConfig, env, *, for_inference: bool = False) -> BaseAlgorithm:
    """A fresh SB3 model for `config` on `env`; bad algorithm arguments raise a `ValueError`.

    `for_inference`: a model only to act with (DQN gets a one-transition replay buffer).
    """
    if not isinstance(env.action_space, spaces.Discrete):
        raise ValueError(
            f"the sb3 backend needs slate_size=1 (a Discrete action space), got {env.action_space}: "
            "SB3 samples each slate position independently and would repeat items; use --backend rllib"
        )
    kwargs = {**DEFAULT_ALGO_CONFIG[config.algo], **config.algo_config}
    if for_inference and config.algo == "dqn":
        kwargs.update(buffer_size=1, learning_starts=0)
    try:
        return SB3_ALGOS[config.algo](
            sb3_policy_class(config.algo, config.action_head),
            env,
            seed=config.seed,
            device=config.device,
            policy_kwargs=_policy_kwargs(config),
            verbose=0,
            **kwargs,
        )
    except ArgumentError:  # a bad encoder or item content argument, named by its message
        raise
    except TypeError as error:
        raise ValueError(f"--algo-config for {config.algo}: {error}") from None


def _exploration_over_steps(model: DQN, horizon: int):
    """DQN's epsilon decayed over `exploration_fraction * horizon` steps, not over a fraction of the run.

    SB3 decays epsilon over a fraction of `total_timesteps`; a run that trains until its time budget is
    spent has no step goal (`UNLIMITED_STEPS`), and that fraction would keep epsilon near 1 throughout.
    """
    start, end = model.exploration_initial_eps, model.exploration_final_eps
    steps = max(model.exploration_fraction * horizon, 1.0)

    def schedule(progress_remaining: float) -> float:
        del progress_remaining
        return start + min(model.num_timesteps / steps, 1.0) * (end - start)

    return schedule


def _next_run_dir(out: Path) -> Path:
    logs = out / "logs"
    k = 0
    while (logs / f"run-{k}").exists():
        k += 1
    return logs / f"run-{k}"


def train_sb3(config: TrainConfig, out: Path, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or, with `resume`, continue) an SB3 run in `out` until `stop_timesteps` or the time budget."""
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        state, _, progress = open_training_state(out)
        if not state.has(WEIGHTS_FILE):
            raise CheckpointError(f"{state.root}: holds no weights yet; nothing to resume in {out}")
        # Fresh environments seeded after the steps already taken, so a resumed run sees new users.
        env = _make_env(config, config.num_envs, config.seed + int(progress["timesteps"]))
        model = build_model(config, env)
        restore_training_state(model, state, progress)
    else:
        env = _make_env(config, config.num_envs, config.seed)
        model = build_model(config, env)
    if config.stop_timesteps >= UNLIMITED_STEPS and config.algo == "dqn":
        model.exploration_schedule = _exploration_over_steps(model, SCHEDULE_HORIZON)
    model.set_logger(configure(str(_next_run_dir(out)), ["csv", "tensorboard"]))

    remaining = config.stop_timesteps - model.num_timesteps
    eval_env = _make_env(config, 1, config.seed + 10_000)
    evaluation = EvalCallback(
        eval_env,
        n_eval_episodes=config.eval_episodes,
        eval_freq=max(config.eval_interval // config.num_envs, 1),
        deterministic=True,
        callback_after_eval=_SaveRun(config, out),
        verbose=1 if progress else 0,
        warn=False,
    )
    start = time.perf_counter()
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            reset_num_timesteps=False,
            callback=CallbackList([evaluation, _TimeBudget(config.time_budget_s)]),
            progress_bar=progress,
        )
    elapsed = time.perf_counter() - start
    _save_run(model, config, out)
    env.close()
    eval_env.close()
    last = (
        float(evaluation.last_mean_reward)
        if evaluation.n_calls and np.isfinite(evaluation.last_mean_reward)
        else None
    )
    return TrainResult(out=out, timesteps=int(model.num_timesteps), elapsed_s=elapsed, last_eval_return=last)
