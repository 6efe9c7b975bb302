"""Persistence of policies: `SavablePolicy`, the registry of saved kinds and `load_policy`.

The contract itself, `recsim_env.policies.Policy` (`act`, `action_distribution`, `seed`), is defined
once in the base layer, and every policy implements it; a trained agent is a `SavablePolicy`, the same
contract with `save` and `load` added:

    actions = policy.act(batched_obs)              # [N], or [N, K] (the base contract)
    policy.save("runs/ppo/policy")                 # an artifact directory (recsim_env.checkpoint)
    policy = agents.load_policy("runs/ppo")        # any kind: a policy artifact or a run directory
    stats = recsim_env.rollout.rollout(policy, n_episodes=1000, seed=0)  # the one rollout loop

A saved policy is an artifact of kind "policy": `policy.json` (`{"kind": ..., "config": {...}}`) and
the kind's own files (tensors as safetensors, the rest JSON), all hashed in `manifest.json`. `kind` is
looked up in `POLICY_KINDS`, a fixed registry in code: a name outside it is refused before anything is
imported, so a file can never choose which module runs. Plugins add a kind with `register_policy_kind`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from recsim_env.checkpoint import (
    Artifact,
    is_artifact,
    open_artifact,
    save_artifact,
    write_json,
)
from recsim_env.errors import CheckpointError
from recsim_env.policies.contract import (
    Policy,
    as_batch,
    sample_slates,
    unbatch_action,
    unbatch_probabilities,
)

MANIFEST_FILE = "policy.json"
POLICY_SUBDIR = "policy"
"""Where a training run directory keeps its policy artifact (`RUN/policy`)."""

POLICY_KINDS: dict[str, str] = {
    "uniform": "agents.baselines:BaselinePolicy",
    "popularity": "agents.baselines:BaselinePolicy",
    "greedy": "agents.baselines:BaselinePolicy",
    "sb3": "agents.training.sb3:SB3Policy",
    "rllib": "agents.rllib.policy:RLModulePolicy",
    "sim2rec": "agents.sim2rec:Sim2RecPolicy",
    "tscac": "agents.tscac:TSCACPolicy",
    "encoder": "agents.encoder_policy:EncoderPolicy",
    "dt4ier": "agents.dt4ier:DT4IERPolicy",
    "supervised": "agents.supervised:SupervisedPolicy",
    "d3rlpy": "agents.d3rlpy:D3rlpyPolicy",
    "retrieval": "agents.retrieval:RetrievalPolicy",
}
"""Policy kinds by name -> the `"module:Class"` whose `from_artifact(artifact, config)` restores one.

The only modules `load_policy` ever imports; `register_policy_kind` adds to it from code."""


def register_policy_kind(kind: str, target: str) -> None:
    """Add a policy kind (from code, e.g. a plugin's import): `target` is `"module:Class"`."""
    if not isinstance(kind, str) or not kind.isidentifier():
        raise ValueError(f"kind {kind!r}: must be an identifier")
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"target {target!r}: must be 'module:Class'")
    POLICY_KINDS[kind] = target


@runtime_checkable
class SavablePolicy(Policy, Protocol):
    """A `recsim_env.policies.Policy` that can be saved and loaded: what a trained agent is."""

    def save(self, path: str | os.PathLike) -> None:
        """Write the policy to directory `path`, an artifact of kind "policy" (see `save_policy`)."""
        ...

    @classmethod
    def load(cls, path: str | os.PathLike) -> SavablePolicy:
        """Restore a policy written by `save` (checked by `open_policy` first)."""
        ...


class ProbabilityPolicy:
    """Shared `act` / `action_distribution` of one-item policies defined by their probabilities.

    A subclass sets `self.rng` (a `np.random.Generator`, reset by its `seed`) and implements
    `_probabilities(batch)`, `[N, n_items]` for a batched observation.
    """

    rng: np.random.Generator

    def _probabilities(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def action_distribution(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        batch, single = as_batch(obs)
        return unbatch_probabilities(self._probabilities(batch), single)

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False) -> Any:
        batch, single = as_batch(obs)
        slates = sample_slates(self._probabilities(batch), 1, self.rng, deterministic)
        return unbatch_action(slates, single, 1)


def save_policy(
    path: str | os.PathLike,
    kind: str,
    config: Mapping[str, Any],
    write_files: Callable[[Path], None] | None = None,
) -> Path:
    """Save a policy artifact at `path`, whole: `write_files(tmp)` adds the kind's own files."""
    if kind not in POLICY_KINDS:
        raise ValueError(f"kind {kind!r}: not a registered policy kind ({', '.join(sorted(POLICY_KINDS))})")

    def write(tmp: Path) -> None:
        if write_files is not None:
            write_files(tmp)
        write_json(tmp / MANIFEST_FILE, {"kind": kind, "config": dict(config)})

    return save_artifact(path, "policy", write, metadata={"policy_kind": kind})


def policy_directory(path: str | os.PathLike) -> Path:
    """The policy artifact of `path`: `path` itself, or a run directory's `path/policy`."""
    path = Path(path)
    if not is_artifact(path) and is_artifact(path / POLICY_SUBDIR):
        return path / POLICY_SUBDIR
    return path


def open_policy(
    path: str | os.PathLike, kind: str | tuple[str, ...] | None = None
) -> tuple[Artifact, dict[str, Any]]:
    """Check a saved policy (or a run directory's) whole: `(artifact, policy.json)`.

    A `kind` outside `POLICY_KINDS`, or another than the caller's `kind`, is refused before any class
    is looked up. A bare encoder checkpoint reads as an `encoder` policy with default settings.
    """
    directory = policy_directory(path)
    artifact = open_artifact(directory, ("policy", "encoder"))
    if artifact.kind == "encoder":
        manifest = {"kind": "encoder", "config": {}}
    else:
        manifest = artifact.read_json_object(MANIFEST_FILE, required=("kind", "config"))
    file = directory / MANIFEST_FILE
    if not isinstance(manifest["kind"], str) or manifest["kind"] not in POLICY_KINDS:
        raise CheckpointError(
            f"{file}: unknown policy kind {manifest['kind']!r}; known: {', '.join(sorted(POLICY_KINDS))} "
            "(kinds come from the registry, never from an import path in a file)"
        )
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and manifest["kind"] not in kinds:
        raise CheckpointError(f"{file}: kind {manifest['kind']!r} is not {' or '.join(kinds)}")
    if not isinstance(manifest["config"], dict):
        raise CheckpointError(f"{file}: 'config' must be a JSON object")
    return artifact, manifest


_Loaded = TypeVar("_Loaded", bound="DeviceLoadable")


class DeviceLoadable:
    """`load` of a policy class that `from_artifact(artifact, manifest, device)` restores with its networks
    on a torch device; the class sets `kind`."""

    kind: ClassVar[str]

    @classmethod
    def load(cls: type[_Loaded], path: str | os.PathLike, device: str = "cpu") -> _Loaded:
        """Restore a policy written by `save`; a wrong kind or a damaged file raises `CheckpointError`."""
        return cls.from_artifact(*open_policy(path, cls.kind), device=device)  # type: ignore[attr-defined]


def policy_class(kind: str) -> type:
    """The class that loads policies of `kind` (a name in `POLICY_KINDS`)."""
    if kind not in POLICY_KINDS:
        raise ValueError(f"unknown policy kind {kind!r}; known: {', '.join(sorted(POLICY_KINDS))}")
    module_name, _, class_name = POLICY_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_policy(path: str | os.PathLike) -> SavablePolicy:
    """Load any saved policy: a policy artifact, a training run directory (its `policy/`), or a bare
    encoder checkpoint (`seqrec train-encoder`, loaded as an `EncoderPolicy` with default settings).

    Raises:
        CheckpointError: naming the file that is missing, altered, of an unknown kind or legacy format.
    """
    artifact, manifest = open_policy(path)
    return policy_class(manifest["kind"]).from_artifact(artifact, manifest)
