"""`seqrec train --backend rllib`: PPO or DQN on the new API stack, env runners on the native vector env.

Run directory layout (`out/`):
- `train_config.json`: the `TrainConfig` (`--resume out` reloads it).
- `checkpoint/`: the RLlib checkpoint (`Algorithm.from_checkpoint(out / "checkpoint")` restores it).
- `policy.json`, `module_state.pt`: the trained RLModule exported as an `agents.Policy`.
- `metrics.csv` and `tensorboard/`: one row / one point per training iteration (steps, episode
  return, learner losses, sampling speed, and the mean return of each periodic evaluation).
- `progress.json`: the environment steps trained so far (what `--resume` continues from).

Connect to a Ray cluster by setting `RAY_ADDRESS` (e.g. after `ray start --head`); otherwise Ray
starts locally with one logical CPU per env runner plus one for the driver.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.policy import rollout_policy, write_atomic
from agents.rllib import env as rllib_env
from agents.rllib.module import MODULES, check_discrete, model_config
from agents.rllib.policy import RLModulePolicy
from agents.training.config import TrainConfig, TrainResult, check_env_config

CHECKPOINT_DIR = "checkpoint"
PROGRESS_FILE = "progress.json"
METRICS_FILE = "metrics.csv"
DEFAULT_TRAINING: dict[str, dict[str, Any]] = {
    # Small batches and few epochs: on two CPU cores sampling, not the update, is the bottleneck.
    "ppo": {
        "lr": 3e-4,
        "train_batch_size_per_learner": 2048,
        "minibatch_size": 256,
        "num_epochs": 4,
        "gamma": 0.99,
        "entropy_coeff": 0.01,
    },
    "dqn": {
        "lr": 5e-4,
        "train_batch_size_per_learner": 64,
        "replay_buffer_config": {"type": "PrioritizedEpisodeReplayBuffer", "capacity": 50_000},
        "num_steps_sampled_before_learning_starts": 1_000,
        "target_network_update_freq": 1_000,
        "dueling": False,
    },
}


def init_ray(config: TrainConfig) -> None:
    """Connect to `RAY_ADDRESS` when set, else start a local Ray with enough logical CPUs for the runners."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=config.num_env_runners + 1, include_dashboard=False, log_to_driver=False)


def build_algorithm_config(config: TrainConfig):
    """The RLlib `AlgorithmConfig` of `config` (bad `algo_config` keys raise a `ValueError` here)."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    algorithm = {"ppo": PPOConfig, "dqn": DQNConfig}[config.algo]()
    module = model_config(
        encoder=config.encoder.lower(),
        encoder_config=dict(config.encoder_config),
        encoder_checkpoint=config.encoder_checkpoint,
        freeze_encoder=config.freeze_encoder,
        mask_history=config.mask_history,
    )
    training = {**DEFAULT_TRAINING[config.algo], **config.algo_config}
    try:
        algorithm = algorithm.training(**training)
    except TypeError as error:
        raise ValueError(f"--algo-config for rllib {config.algo}: {error}") from None
    return (
        algorithm.environment(env=rllib_env.register(config.env_id), env_config=dict(config.env_config))
        .framework("torch")
        .env_runners(
            num_env_runners=config.num_env_runners,
            num_envs_per_env_runner=config.num_envs,
            gym_env_vectorize_mode=rllib_env.VECTORIZE_MODE,
            num_cpus_per_env_runner=1,
        )
        .learners(num_learners=0)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=MODULES[config.algo], model_config=module))
        .debugging(seed=config.seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=100)
    )


def export_policy(algorithm, config: TrainConfig) -> RLModulePolicy:
    """The algorithm's current RLModule as an `agents.Policy` (a copy on the CPU, in this process)."""
    import torch

    trained = algorithm.get_module()
    policy = RLModulePolicy.build(
        algo=config.algo,
        env_id=config.env_id,
        env_config=config.env_config,
        seed=config.seed,
        **{key: value for key, value in trained.model_config.items() if key in model_config()},
    )
    state = {key: value for key, value in trained.state_dict().items() if not key.startswith("_target")}
    policy.module.load_state_dict({key: torch.as_tensor(value).cpu() for key, value in state.items()})
    policy.module.eval()
    return policy


def _save_checkpoint(algorithm, out: Path) -> None:
    """Write the RLlib checkpoint to a temporary directory, then swap it in (a reader never sees half of one)."""
    tmp, old = out / f".{CHECKPOINT_DIR}.tmp", out / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    algorithm.save_to_path(str(tmp.resolve()))
    shutil.rmtree(old, ignore_errors=True)
    if (out / CHECKPOINT_DIR).exists():
        os.replace(out / CHECKPOINT_DIR, old)
    os.replace(tmp, out / CHECKPOINT_DIR)
    shutil.rmtree(old, ignore_errors=True)


def _learner_metrics(result: dict) -> dict[str, float]:
    stats = result.get("learners", {}).get("default_policy", {})
    keys = ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "qf_loss", "qf_mean")
    return {f"learner/{key}": float(stats[key]) for key in keys if key in stats}


def _write_metrics(rows: list[dict[str, Any]], out: Path) -> None:
    import pandas as pd

    write_atomic(out / METRICS_FILE, pd.DataFrame(rows).to_csv(index=False).encode())


def train_rllib(
    config: TrainConfig, out: Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train (or, with `resume`, continue) an RLlib run in `out` until `stop_timesteps` or the time budget."""
    import pandas as pd
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    # Bad arguments fail here, before Ray starts.
    _, action_space = check_env_config(config.env_id, config.env_config)
    check_discrete(action_space)
    algorithm_config = build_algorithm_config(config)
    out.mkdir(parents=True, exist_ok=True)
    timesteps, rows = 0, []
    if resume:
        if not (out / CHECKPOINT_DIR).is_dir():
            raise FileNotFoundError(f"{out / CHECKPOINT_DIR}: missing; nothing to resume in {out}")
        timesteps = int(json.loads((out / PROGRESS_FILE).read_text())["timesteps"])
        if (out / METRICS_FILE).is_file():
            rows = pd.read_csv(out / METRICS_FILE).to_dict("records")
    config.save(out)

    init_ray(config)
    if resume:
        from ray.rllib.algorithms.algorithm import Algorithm

        algorithm = Algorithm.from_checkpoint(str((out / CHECKPOINT_DIR).resolve()))
    else:
        algorithm = algorithm_config.build_algo()
    writer = SummaryWriter(str(out / "tensorboard"))
    next_eval = (timesteps // config.eval_interval + 1) * config.eval_interval
    last_eval: float | None = None
    start = time.perf_counter()
    try:
        with tqdm(
            total=config.stop_timesteps,
            initial=timesteps,
            desc=f"rllib {config.algo}",
            unit="step",
            disable=not progress,
        ) as bar:
            while timesteps < config.stop_timesteps:
                if config.time_budget_s is not None and time.perf_counter() - start >= config.time_budget_s:
                    break
                tick = time.perf_counter()
                result = algorithm.train()
                runners = result.get("env_runners", {})
                steps = int(runners.get("num_env_steps_sampled", 0))
                timesteps += steps
                bar.update(steps)
                row: dict[str, Any] = {
                    "iteration": len(rows) + 1,
                    "timesteps": timesteps,
                    "time_s": time.perf_counter() - start,
                    "env_steps_per_s": steps / max(time.perf_counter() - tick, 1e-9),
                    "episode_return_mean": float(runners.get("episode_return_mean", np.nan)),
                    "episode_len_mean": float(runners.get("episode_len_mean", np.nan)),
                    **_learner_metrics(result),
                }
                # Evaluation rolls the exported policy out in SeqRec-v0's native vector env, in this process.
                evaluable = config.env_id == "SeqRec-v0"
                if evaluable and (timesteps >= next_eval or timesteps >= config.stop_timesteps):
                    policy = export_policy(algorithm, config)
                    stats = rollout_policy(
                        policy,
                        n_episodes=config.eval_episodes,
                        seed=config.seed + 10_000,
                        deterministic=True,
                        **config.env_config,
                    )
                    last_eval = stats.mean_return
                    row["eval/mean_return"] = last_eval
                    next_eval = (timesteps // config.eval_interval + 1) * config.eval_interval
                    _save_run(algorithm, policy, out, timesteps)
                    bar.write(f"step {timesteps}: evaluation mean return {last_eval:.3f}")
                rows.append(row)
                for key, value in row.items():
                    if key not in ("iteration", "timesteps") and np.isfinite(value):
                        writer.add_scalar(key, value, timesteps)
                _write_metrics(rows, out)
                bar.set_postfix(episode_return=f"{row['episode_return_mean']:.2f}")
        _save_run(algorithm, export_policy(algorithm, config), out, timesteps)
    finally:
        writer.close()
        algorithm.stop()
    return TrainResult(
        out=out, timesteps=timesteps, elapsed_s=time.perf_counter() - start, last_eval_return=last_eval
    )


def _save_run(algorithm, policy: RLModulePolicy, out: Path, timesteps: int) -> None:
    _save_checkpoint(algorithm, out)
    policy.save(out)
    write_atomic(out / PROGRESS_FILE, json.dumps({"timesteps": timesteps}).encode())
