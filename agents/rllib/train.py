"""`seqrec train --backend rllib`: PPO or DQN on the new API stack, env runners on the native vector env.

Run directory layout (`out/`):
- `policy/`: the trained RLModule exported as an `agents.Policy` artifact (kind "rllib": `policy.json`
  and `weights.safetensors`), so `agents.load_policy(out)` / `seqrec evaluate out` work.
- `state/`: the resumable training state (an artifact of kind "training-state"): `train_config.json`
  (the `TrainConfig`), `progress.json` (`{"timesteps": N}`, the environment steps trained so far) and
  `module_state.safetensors`, the learner's FULL module state (DQN's target network included).
- `checkpoint/`: RLlib's own checkpoint (`Algorithm.save_to_path`). It holds pickles (the algorithm
  config, connector and learner states), so it is read only with `trust_checkpoint=True`.
- `metrics.csv` and `tensorboard/`: one row / one point per training iteration (steps, episode
  return, learner losses, sampling speed, and the mean return of each periodic evaluation).

Resuming (`resume=True`, `seqrec train --resume out`) reads nothing in `checkpoint/`: the algorithm is
rebuilt from the config (`build_algorithm_config(config).build_algo()`), the module state from
`state/` (hash-checked safetensors) is loaded strictly into the learner's module and the weights are
synced to the env runners. What RLlib keeps only in its pickled checkpoint restarts: the optimiser
state (Adam's moments), the DQN replay buffer (refilled before learning starts again), and RLlib's own
counters (its lifetime step count, hence DQN's epsilon schedule and target-update timing, and the
iteration number). The step count of the run itself (`progress.json`) carries on. A run converted
from format 1 (`seqrec convert`), whose state holds no module state, resumes from its `policy/`
weights (DQN's target network is then a copy of the online one).

`trust_checkpoint=True` restores the full RLlib state instead with `Algorithm.from_checkpoint`, which
unpickles the files of `checkpoint/`: unpickling runs whatever code the files name, so use it only for
a run you made yourself, never for a directory you were sent (see docs/security.md).

Connect to a Ray cluster by setting `RAY_ADDRESS` (e.g. after `ray start --head`; a `HOST:PORT` at which
nothing answers is refused at once); otherwise Ray starts locally with one logical CPU per env runner plus
one for the driver.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agents.policy import POLICY_SUBDIR, open_policy
from agents.rllib import env as rllib_env
from agents.rllib.module import MODULES, check_discrete, model_config
from agents.rllib.policy import WEIGHTS_FILE, RLModulePolicy, is_target_key
from agents.training.config import (
    TrainConfig,
    TrainResult,
    check_env_config,
    open_training_state,
    save_training_state,
)
from recsim_env.checkpoint import Artifact, write_tensors
from recsim_env.errors import CheckpointError
from recsim_env.io import write_atomic
from recsim_env.ray_address import check_ray_address

CHECKPOINT_DIR = "checkpoint"
MODULE_STATE_FILE = "module_state.safetensors"
"""The learner's full module state in `out/state` (what an untrusted resume loads)."""
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
        check_ray_address(os.environ["RAY_ADDRESS"])
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=config.num_env_runners + 1, include_dashboard=False, log_to_driver=False)


def module_config(config: TrainConfig) -> dict[str, Any]:
    """The RLModule's `model_config` for `config`."""
    return model_config(
        encoder=config.encoder.lower(),
        encoder_config=dict(config.encoder_config),
        encoder_checkpoint=config.encoder_checkpoint,
        freeze_encoder=config.freeze_encoder,
        mask_history=config.mask_history,
    )


def build_algorithm_config(config: TrainConfig):
    """The RLlib `AlgorithmConfig` of `config` (bad `algo_config` keys raise a `ValueError` here)."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    algorithm = {"ppo": PPOConfig, "dqn": DQNConfig}[config.algo]()
    module = module_config(config)
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


def learner_module_state(algorithm) -> dict[str, np.ndarray]:
    """The learner's full module state (target network included), as numpy arrays in this process."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    return dict(algorithm.learner_group.get_weights(module_ids=[DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID])


def export_policy(algorithm, config: TrainConfig, state: Mapping[str, Any] | None = None) -> RLModulePolicy:
    """The learner's current RLModule as an `agents.Policy` (a copy on the CPU, in this process).

    `state`: the learner's module state if already fetched (`learner_module_state`).
    """
    import torch

    if state is None:
        state = learner_module_state(algorithm)
    policy = RLModulePolicy.build(
        algo=config.algo,
        env_id=config.env_id,
        env_config=config.env_config,
        seed=config.seed,
        **module_config(config),
    )
    weights = {
        key: torch.as_tensor(np.asarray(value)).cpu()
        for key, value in state.items()
        if not is_target_key(key)
    }
    policy.module.load_state_dict(weights)
    policy.module.eval()
    return policy


def load_module_state(
    algorithm, state: Mapping[str, Any], *, where: str, targets_from_online: bool = False
) -> None:
    """Load `state` into every learner's module, strictly, then sync the weights to the env runners.

    `targets_from_online`: `state` is a policy's (no target network); DQN's target network is then
    set to a copy of the online network. A missing or unexpected key, or a shape that does not fit,
    raises a `CheckpointError` naming `where`.
    """
    import torch
    from ray.rllib.core import DEFAULT_MODULE_ID

    tensors = {
        key: value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        for key, value in state.items()
    }

    def load(learner) -> None:
        module = learner.module[DEFAULT_MODULE_ID].unwrapped()
        if not targets_from_online:
            module.load_state_dict(tensors)  # strict: every key, every shape
            return
        missing, unexpected = module.load_state_dict(tensors, strict=False)
        missing = [key for key in missing if not is_target_key(key)]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing}, unexpected keys {list(unexpected)}")
        for online, target in (
            module.get_target_network_pairs() if hasattr(module, "get_target_network_pairs") else ()
        ):
            target.load_state_dict(online.state_dict())

    try:
        results = algorithm.learner_group.foreach_learner(load)
    except (RuntimeError, ValueError, KeyError) as error:  # a local learner raises here
        raise CheckpointError(
            f"{where}: the module state does not fit the configured module: {error}"
        ) from None
    for result in results:  # remote learners report their errors in the results
        if not result.ok:
            raise CheckpointError(
                f"{where}: the module state does not fit the configured module: {result.get()}"
            )
    algorithm.env_runner_group.sync_weights(
        from_worker_or_learner_group=algorithm.learner_group, inference_only=True
    )
    if getattr(algorithm, "eval_env_runner_group", None) is not None:
        algorithm.eval_env_runner_group.sync_weights(
            from_worker_or_learner_group=algorithm.learner_group, inference_only=True
        )


def _saved_module_state(state: Artifact, out: Path) -> tuple[dict[str, Any], str, bool]:
    """The module state an untrusted resume loads: `(tensors, the file they came from, targets_from_online)`.

    `state/module_state.safetensors` when the run saved one; else (a run converted from format 1) the
    weights of the run's `policy/`, checked as a policy artifact.
    """
    if state.has(MODULE_STATE_FILE):
        return (
            state.read_tensors(MODULE_STATE_FILE, framework="pt"),
            str(state.root / MODULE_STATE_FILE),
            False,
        )
    policy_dir = out / POLICY_SUBDIR
    if not policy_dir.is_dir():
        raise CheckpointError(
            f"{state.root}: holds no {MODULE_STATE_FILE} and {policy_dir} is missing; nothing to resume"
        )
    artifact, _ = open_policy(policy_dir, RLModulePolicy.kind)
    return artifact.read_tensors(WEIGHTS_FILE, framework="pt"), str(artifact.root / WEIGHTS_FILE), True


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
    config: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    trust_checkpoint: bool = False,
) -> TrainResult:
    """Train (or, with `resume`, continue) an RLlib run in `out` until `stop_timesteps` or the time budget.

    Args:
        config: the run's settings (on resume, usually `TrainConfig.load(out)` with a new budget).
        out: the run directory (see the module docstring for its layout).
        resume: continue the run in `out`: the algorithm is rebuilt from `config` and the module
            state loaded from `out/state` (hash-checked safetensors); `out/checkpoint` is not read.
            The optimiser state, the DQN replay buffer and RLlib's own counters restart.
        progress: show a progress bar.
        trust_checkpoint: with `resume`, restore RLlib's full state (optimiser, replay buffer,
            counters) with `Algorithm.from_checkpoint(out / "checkpoint")` instead. That checkpoint is
            made of pickles, and unpickling a file runs any code it names: this is behind a flag so
            that resuming a run directory you did not make yourself never executes its files.

    Raises:
        CheckpointError: the run's `state/` (or `policy/`) is missing a file, altered, or does not fit
            the configured module (the message names the file).
        FileNotFoundError: nothing to resume in `out`.
    """
    import pandas as pd
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    from recsim_env.rollout import rollout

    if trust_checkpoint and not resume:
        raise ValueError(
            "trust_checkpoint applies to resume only (it restores RLlib's checkpoint of the run)"
        )
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    # Bad arguments and a damaged run fail here, before Ray starts.
    _, action_space = check_env_config(config.env_id, config.env_config)
    check_discrete(action_space)
    algorithm_config = build_algorithm_config(config)
    out.mkdir(parents=True, exist_ok=True)
    timesteps, rows = 0, []
    saved_state = None
    if resume:
        state, saved_config, saved_progress = open_training_state(out)
        if saved_config.backend != "rllib":
            raise CheckpointError(
                f"{state.root}: the state of a {saved_config.backend!r} run, not an rllib one"
            )
        timesteps = int(saved_progress["timesteps"])
        if trust_checkpoint:
            if not (out / CHECKPOINT_DIR).is_dir():
                raise FileNotFoundError(
                    f"{out / CHECKPOINT_DIR}: missing; nothing to restore with trust_checkpoint"
                )
        else:
            saved_state = _saved_module_state(state, out)
        if (out / METRICS_FILE).is_file():
            rows = pd.read_csv(out / METRICS_FILE).to_dict("records")

    init_ray(config)
    if resume and trust_checkpoint:
        from ray.rllib.algorithms.algorithm import Algorithm

        algorithm = Algorithm.from_checkpoint(str((out / CHECKPOINT_DIR).resolve()))
    else:
        algorithm = algorithm_config.build_algo()
    try:
        if saved_state is not None:
            tensors, where, targets_from_online = saved_state
            load_module_state(algorithm, tensors, where=where, targets_from_online=targets_from_online)
    except BaseException:
        algorithm.stop()
        raise
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
                    module_state = learner_module_state(algorithm)
                    policy = export_policy(algorithm, config, module_state)
                    # The rest of training draws from torch's global generator after this point:
                    # reseeding it here keeps a seeded run reproducible whatever the evaluation draws.
                    torch.manual_seed(config.seed + 10_000)
                    stats = rollout(
                        policy,
                        n_episodes=config.eval_episodes,
                        seed=config.seed + 10_000,
                        deterministic=True,
                        **config.env_config,
                    )
                    last_eval = stats.mean_return
                    row["eval/mean_return"] = last_eval
                    next_eval = (timesteps // config.eval_interval + 1) * config.eval_interval
                    _save_run(algorithm, policy, module_state, config, out, timesteps)
                    bar.write(f"step {timesteps}: evaluation mean return {last_eval:.3f}")
                rows.append(row)
                for key, value in row.items():
                    if key not in ("iteration", "timesteps") and np.isfinite(value):
                        writer.add_scalar(key, value, timesteps)
                _write_metrics(rows, out)
                bar.set_postfix(episode_return=f"{row['episode_return_mean']:.2f}")
        module_state = learner_module_state(algorithm)
        _save_run(
            algorithm, export_policy(algorithm, config, module_state), module_state, config, out, timesteps
        )
    finally:
        writer.close()
        algorithm.stop()
    return TrainResult(
        out=out, timesteps=timesteps, elapsed_s=time.perf_counter() - start, last_eval_return=last_eval
    )


def _save_run(
    algorithm,
    policy: RLModulePolicy,
    module_state: Mapping[str, Any],
    config: TrainConfig,
    out: Path,
    timesteps: int,
) -> None:
    """Write the run's policy, its resumable state (each artifact whole) and RLlib's own checkpoint."""
    policy.save(out / POLICY_SUBDIR)
    save_training_state(
        out,
        config,
        {"timesteps": timesteps},
        lambda tmp: write_tensors(tmp / MODULE_STATE_FILE, module_state),
    )
    _save_checkpoint(algorithm, out)
