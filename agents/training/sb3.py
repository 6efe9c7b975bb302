"""Stable-Baselines3 backend: PPO, A2C or DQN over `SequenceFeaturesExtractor`, and `SB3Policy`.

Run directory layout (`out/`):
- `train_config.json`: the `TrainConfig` (`--resume out` reloads it).
- `model.zip`: the SB3 model (weights, optimiser, step count); DQN adds `replay_buffer.pkl`.
- `policy.json`: the `agents.Policy` manifest, so `agents.load_policy(out)` / `seqrec evaluate out` work.
- `logs/run-K/`: `progress.csv` and TensorBoard events of the K-th (re)start (SB3's logger), with
  `eval/mean_reward` every `eval_interval` steps.
"""

from __future__ import annotations

import os
import time
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

from agents.policy import (
    ProbabilityPolicy,
    read_manifest,
    write_manifest,
)
from agents.sb3 import SequenceFeaturesExtractor
from agents.training.config import TrainConfig, TrainResult

SB3_ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
MODEL_FILE = "model.zip"
REPLAY_FILE = "replay_buffer.pkl"
DEFAULT_ALGO_CONFIG: dict[str, dict[str, Any]] = {
    # PPO: 8 envs x 256 steps = 2048 steps per update, SB3's default batch of experience.
    "ppo": {"n_steps": 256, "batch_size": 256},
    "a2c": {},
    # A 1M-transition buffer of dict observations would take gigabytes; 50k is plenty here.
    "dqn": {"buffer_size": 50_000, "learning_starts": 1_000},
}


class SB3Policy(ProbabilityPolicy):
    """A trained SB3 model behind the `agents.Policy` contract.

    Actor-critic models (PPO, A2C) report their categorical policy `pi(a | s)`; DQN reports its
    greedy policy (one-hot on `argmax_a Q(s, a)`), since exploration belongs to training. Sampling
    uses the policy's own generator (`seed`), so rollouts are reproducible.
    """

    kind = "sb3"

    def __init__(self, model: BaseAlgorithm, algo: str, *, seed: int | None = 0) -> None:
        if not isinstance(model.action_space, spaces.Discrete):
            raise ValueError(f"SB3Policy needs a Discrete action space, got {model.action_space}")
        self.model = model
        self.algo = algo
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
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        _save_model_atomic(self.model, out / MODEL_FILE)
        write_manifest(out, self.kind, {"algo": self.algo, "n_items": self.n_items})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> SB3Policy:
        config = read_manifest(path)["config"]
        algo = config["algo"]
        if algo not in SB3_ALGOS:
            raise ValueError(f"{Path(path) / 'policy.json'}: unknown SB3 algorithm {algo!r}")
        model = SB3_ALGOS[algo].load(Path(path) / MODEL_FILE, device=device)
        return cls(model, algo)


def _save_model_atomic(model: BaseAlgorithm, target: Path) -> None:
    tmp = target.with_name(f".{target.stem}.tmp.zip")  # SB3 insists on a .zip suffix
    model.save(tmp)
    os.replace(tmp, target)


def _save_run(model: BaseAlgorithm, config: TrainConfig, out: Path) -> None:
    SB3Policy(model, config.algo).save(out)
    if config.algo == "dqn":
        tmp = out / f".{REPLAY_FILE}.tmp"
        model.save_replay_buffer(tmp)
        os.replace(tmp, out / REPLAY_FILE)


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
    import recsim_env  # noqa: F401  (registers the environments)

    return make_vec_env(lambda: gym.make(config.env_id, **config.env_config), n_envs=n_envs, seed=seed)


def _policy_kwargs(config: TrainConfig) -> dict[str, Any]:
    extractor = {
        "encoder": config.encoder.lower(),
        "encoder_config": dict(config.encoder_config),
        "freeze": config.freeze_encoder,
    }
    if config.encoder_checkpoint is not None:
        extractor["checkpoint"] = config.encoder_checkpoint
    return {"features_extractor_class": SequenceFeaturesExtractor, "features_extractor_kwargs": extractor}


def build_model(config: TrainConfig, env) -> BaseAlgorithm:
    """A fresh SB3 model for `config` on `env`; bad algorithm arguments raise a `ValueError`."""
    if not isinstance(env.action_space, spaces.Discrete):
        raise ValueError(
            f"the sb3 backend needs slate_size=1 (a Discrete action space), got {env.action_space}: "
            "SB3 samples each slate position independently and would repeat items; use --backend rllib"
        )
    kwargs = {**DEFAULT_ALGO_CONFIG[config.algo], **config.algo_config}
    try:
        return SB3_ALGOS[config.algo](
            "MultiInputPolicy",
            env,
            seed=config.seed,
            device=config.device,
            policy_kwargs=_policy_kwargs(config),
            verbose=0,
            **kwargs,
        )
    except TypeError as error:
        raise ValueError(f"--algo-config for {config.algo}: {error}") from None


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
        if not (out / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{out / MODEL_FILE}: missing; nothing to resume in {out}")
        model = SB3_ALGOS[config.algo].load(out / MODEL_FILE, device=config.device)
        # Fresh environments seeded after the steps already taken, so a resumed run sees new users.
        env = _make_env(config, config.num_envs, config.seed + model.num_timesteps)
        model.set_env(env)
        if config.algo == "dqn" and (out / REPLAY_FILE).is_file():
            model.load_replay_buffer(out / REPLAY_FILE)
    else:
        env = _make_env(config, config.num_envs, config.seed)
        model = build_model(config, env)
    config.save(out)
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
