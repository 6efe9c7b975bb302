"""The training configuration shared by both backends, its checks, and the `train` entry point.

Everything that can be wrong with a run (an unknown backend, algorithm or encoder, a bad
environment argument, a bad algorithm argument) is caught here, in the calling process, before a
model is built or a worker starts.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsim_env.checkpoint import Artifact, dataclass_from_json, open_artifact, save_artifact, write_json
from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real
from recsim_env.errors import CheckpointError

BACKENDS = ("sb3", "rllib")
ALGOS: dict[str, tuple[str, ...]] = {"sb3": ("ppo", "a2c", "dqn"), "rllib": ("ppo", "dqn")}
"""Algorithms each backend trains."""
UNLIMITED_STEPS = 10**12
"""`stop_timesteps` of a run that trains until its `time_budget_s` is spent."""
SCHEDULE_HORIZON = 100_000
"""The horizon of SB3's progress-based schedules (DQN's exploration) in a run with no step goal."""
CONFIG_FILE = "train_config.json"
PROGRESS_FILE = "progress.json"
STATE_SUBDIR = "state"
"""Where a run directory keeps its resumable training state: an artifact of kind "training-state"."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run: backend, algorithm, environment, encoder, budget and evaluation."""

    backend: str = "sb3"
    """"sb3" (Stable-Baselines3, one process) or "rllib" (Ray RLlib, env runners in worker processes)."""
    algo: str = "ppo"
    """Algorithm name; see `ALGOS` for what each backend trains."""
    env_id: str = "SeqRec-v0"
    """A registered `recsim_env` environment id."""
    env_config: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the environment (as `gym.make(env_id, **env_config)`)."""
    encoder: str = "sasrec"
    """Sequence encoder of the policy: a name in `recsim_env.encoders.registry.ENCODERS`."""
    encoder_config: Mapping[str, Any] = field(default_factory=dict)
    """Encoder config fields (n_items, max_len and feedback_dim default to the environment's)."""
    encoder_checkpoint: str | None = None
    """Initialise the encoder from this checkpoint directory (`seqrec train-encoder`) instead."""
    item_content: str = "auto"
    """sb3: the item content the encoder reads (docs/item_text.md): "catalogue" (the environment's public item
    attributes: the world's category and duration, or the item features a learned simulator reads),
    "none", or "auto" (catalogue for an encoder that needs content, such as H2Rec, built without
    `encoder_checkpoint`; else none)."""
    freeze_encoder: bool = False
    """Keep the encoder's weights fixed; only the heads learn."""
    mask_history: bool = False
    """RLlib: never recommend items already in the observed history (their logits are masked)."""
    feedback_transform: str = "none"
    """sb3: the feedback as the encoder reads it, "none" (as observed) or "log1p" (`sign(x) log(1 + |x|)`,
    `agents.sb3.SequenceFeaturesExtractor`)."""
    action_head: str = "mlp"
    """"mlp" (one output row per item) or, on sb3, "tied" (logits from the encoder's item embeddings, `agents.heads`)."""
    num_envs: int = 8
    """Users stepped together per process (SB3: sub-envs; RLlib: `num_envs_per_env_runner`)."""
    num_env_runners: int = 0
    """RLlib: sampling worker processes (0 samples in the driver); ignored by SB3."""
    stop_timesteps: int = 100_000
    """Stop after this many environment steps in total (a resumed run counts the earlier ones)."""
    time_budget_s: float | None = None
    """Also stop after this many seconds of training in this process (breaks reproducibility)."""
    eval_interval: int = 10_000
    """Environment steps between evaluations (and checkpoints)."""
    eval_episodes: int = 20
    """Episodes per evaluation (deterministic actions, a separate environment seeded seed + 10_000)."""
    seed: int = 0
    """Seed of the environments, the weights and the sampling."""
    device: str = "cpu"
    """Torch device of the learner: "cpu", "cuda" or "auto"."""
    torch_threads: int = 1
    """Torch CPU threads per process (1 is fastest for per-step batches of a few users; 0: torch's default)."""
    algo_config: Mapping[str, Any] = field(default_factory=dict)
    """Extra algorithm arguments (SB3: constructor keywords, e.g. n_steps; RLlib: `.training(...)` keywords)."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("backend",), check_choice, choices=BACKENDS)
        if self.algo not in ALGOS[self.backend]:
            raise ValueError(
                f"TrainConfig.algo: unknown algorithm {self.algo!r} for backend {self.backend!r}; "
                f"known: {', '.join(ALGOS[self.backend])}"
            )
        from recsim_env.encoders.registry import ENCODERS

        if not isinstance(self.encoder, str) or self.encoder.lower() not in ENCODERS:
            raise ValueError(
                f"TrainConfig.encoder: unknown encoder {self.encoder!r}; known: {', '.join(sorted(ENCODERS))}"
            )
        positive = ("num_envs", "stop_timesteps", "eval_interval", "eval_episodes")
        check_config_fields(self, positive, check_integer, low=1)
        check_config_fields(self, ("num_env_runners", "torch_threads"), check_integer, low=0)
        check_config_fields(
            self, ("time_budget_s",), check_real, low=0.0, low_open=True, allow_inf=True, optional=True
        )
        from recsim_env import ENV_IDS

        check_config_fields(self, ("env_id",), check_choice, choices=ENV_IDS)
        check_config_fields(self, ("device",), check_choice, choices=("cpu", "cuda", "auto"))
        check_config_fields(self, ("action_head",), check_choice, choices=("mlp", "tied"))
        check_config_fields(self, ("feedback_transform",), check_choice, choices=("none", "log1p"))
        check_config_fields(self, ("item_content",), check_choice, choices=("auto", "none", "catalogue"))
        if self.item_content == "catalogue" and self.encoder_checkpoint is not None:
            raise ValueError(
                "TrainConfig.item_content: an encoder checkpoint carries its own item content; leave it 'auto'"
            )
        if (
            self.content_source == "none"
            and self.encoder_checkpoint is None
            and ENCODERS[self.encoder.lower()].needs_item_content
            and not self.encoder_config.get("item_text_dim")
        ):
            raise ValueError(
                f"TrainConfig.item_content 'none': encoder {self.encoder!r} needs item content embeddings: "
                "use --item-content catalogue (or auto)"
            )
        if self.backend == "rllib" and self.content_source != "none":
            raise ValueError(
                f"TrainConfig.item_content: the rllib modules read no item content (encoder {self.encoder!r}, "
                f"item content {self.item_content!r}); use --backend sb3"
            )
        if self.backend == "rllib" and self.action_head == "tied":
            raise ValueError("TrainConfig.action_head: the rllib modules have the mlp head only")
        if self.backend == "rllib" and self.feedback_transform != "none":
            raise ValueError(
                "TrainConfig.feedback_transform: the rllib modules read the feedback as observed"
            )
        for name in ("env_config", "encoder_config", "algo_config"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(
                    f"TrainConfig.{name} must be a JSON object (dict), got {getattr(self, name)!r}"
                )

    @property
    def content_source(self) -> str:
        """What `item_content` means for this encoder, "catalogue" or "none" (`resolve_content_source`)."""
        from recsim_env.encoders.item_text import resolve_content_source

        if self.item_content == "auto" and self.encoder_checkpoint is not None:
            return "none"
        return resolve_content_source(self.item_content, self.encoder.lower())

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: dict(getattr(self, f.name))
            if isinstance(getattr(self, f.name), Mapping)
            else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, fields: Any, *, where: str) -> TrainConfig:
        """The config from parsed JSON, each field type-checked (`CheckpointError` naming `where`)."""
        return dataclass_from_json(cls, fields, where=where)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TrainConfig:
        """The config of the run in `directory` (from its checked training state)."""
        return open_training_state(directory)[1]


def save_training_state(
    out: str | os.PathLike,
    config: TrainConfig,
    progress: Mapping[str, Any],
    write_files=None,
) -> Path:
    """Write the run's resumable state, whole, to `out/state`: the config, `progress` and the
    backend's own files (`write_files(tmp)`: weights, optimiser, replay buffer)."""

    def write(tmp: Path) -> None:
        if write_files is not None:
            write_files(tmp)
        write_json(tmp / CONFIG_FILE, config.to_dict())
        write_json(tmp / PROGRESS_FILE, dict(progress))

    return save_artifact(
        Path(out) / STATE_SUBDIR, "training-state", write, metadata={"backend": config.backend}
    )


def open_training_state(out: str | os.PathLike) -> tuple[Artifact, TrainConfig, dict[str, Any]]:
    """The checked training state of the run in `out`: `(artifact, config, progress)`."""
    directory = Path(out) / STATE_SUBDIR
    if not directory.is_dir():
        if (Path(out) / CONFIG_FILE).is_file():
            from recsim_env.checkpoint import CONVERT_HINT

            raise CheckpointError(
                f"{out}: a run saved by an older version (format 1); " + CONVERT_HINT.format(path=out)
            )
        raise FileNotFoundError(
            f"{directory}: missing; nothing to resume in {out} (is it a training run directory?)"
        )
    artifact = open_artifact(directory, "training-state", required=(CONFIG_FILE, PROGRESS_FILE))
    config = TrainConfig.from_dict(artifact.read_json(CONFIG_FILE), where=str(directory / CONFIG_FILE))
    progress = artifact.read_json_object(PROGRESS_FILE, required=("timesteps",))
    steps = progress["timesteps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise CheckpointError(f"{directory / PROGRESS_FILE}: 'timesteps' must be a non-negative integer")
    return artifact, config, progress


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run reached."""

    out: Path
    """The run directory (a saved `agents.Policy`, loadable with `agents.load_policy`)."""
    timesteps: int
    """Environment steps trained in total (a resumed run includes the earlier ones)."""
    elapsed_s: float
    """Seconds of training in this process."""
    last_eval_return: float | None
    """Mean return of the last evaluation, if any ran."""


def environment_item_content(env_id: str, env_config: Mapping[str, Any]) -> np.ndarray:
    """`[N, T]` float32 catalogue content of the environment's items (`TrainConfig.item_content`).

    The world's users: its public item attributes (`recsim_env.encoders.item_text.world_item_content`); a
    learned simulator's: the encoded item table features it reads (`ResponseModel.item_feature_table`).

    Raises:
        ValueError: the environment's users are neither, or the simulator reads no item features.
    """
    import gymnasium as gym

    import recsim_env  # noqa: F401  (registers the environments)
    from recsim_env.encoders.item_text import world_item_content
    from recsim_env.world import UserWorld

    env = gym.make(env_id, **env_config)
    user_model = getattr(env.unwrapped, "user_model", None)
    env.close()
    if isinstance(user_model, UserWorld):
        return world_item_content(user_model)
    members = getattr(user_model, "members", None)
    table = getattr(members[0], "item_feature_table", None) if members else None
    if table is None:
        raise ValueError(
            f"item content 'catalogue': the users of {env_id} ({type(user_model).__name__}) publish no item "
            "attributes (the world does, and a learned simulator fitted with item features)"
        )
    return table[:-1].detach().cpu().numpy().astype("float32")  # the last row is the padding item's


def check_env_config(env_id: str, env_config: Mapping[str, Any]):
    """Build the environment once in this process; a bad id or argument raises a `ValueError` naming it.

    Returns the environment's (observation space, action space).
    """
    import gymnasium as gym

    import recsim_env  # noqa: F401  (registers the environments)
    from recsim_env import ENV_IDS

    if env_id not in ENV_IDS:
        raise ValueError(f"--env: {env_id!r} is not one of {', '.join(ENV_IDS)}")
    if not isinstance(env_config, Mapping):
        raise ValueError(f"--env-config must be a JSON object, got {env_config!r}")
    try:
        env = gym.make(env_id, **env_config)
    except gym.error.Error as error:
        raise ValueError(f"--env: {error}") from None
    except TypeError as error:
        from recsim_env.envs import SeqRecEnv

        known = [name for name in inspect.signature(SeqRecEnv).parameters if name != "render_mode"]
        raise ValueError(
            f"--env-config: {error}; the arguments of SeqRec-v0 are {', '.join(known)}"
        ) from None
    except ValueError as error:
        raise ValueError(f"--env-config: {error}") from None
    spaces = (env.observation_space, env.action_space)
    env.close()
    return spaces
