"""`D3rlpyPolicy`: a trained d3rlpy algorithm behind the `agents.Policy` contract, saved without pickle.

The artifact holds `config.json` (the `D3rlpyConfig`), `weights.safetensors` (the state of every
torch module of the algorithm's implementation, keyed `module.parameter`) and `policy.json`; loading
rebuilds the algorithm from the config and loads the weights. d3rlpy's own `save`/`load_learnable`
(pickle) is never used.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agents.d3rlpy.config import D3rlpyConfig
from agents.d3rlpy.data import encode_observations
from agents.policy import DeviceLoadable, as_batch, save_policy, unbatch_action, unbatch_probabilities
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.errors import CheckpointError
from recsim_env.policies import one_hot


def _modules(algo) -> dict[str, Any]:
    import torch

    modules = algo.impl.modules
    return {
        field.name: getattr(modules, field.name)
        for field in dataclasses.fields(modules)
        if isinstance(getattr(modules, field.name), torch.nn.Module)
    }


def build_algorithm(config: D3rlpyConfig, n_items: int, device: str):
    """The d3rlpy algorithm of `config` with its networks built for `n_items` actions."""
    algo = config.algo_config().create(device=device)
    algo.create_impl((2 * n_items + 2,), n_items)
    return algo


class D3rlpyPolicy(DeviceLoadable):
    """Recommends the item the algorithm's greedy action picks (`predict`: argmax Q, or BC's mode).

    Deterministic: `action_distribution` is one-hot on that item. One item per step (`slate_size` 1).
    """

    kind: ClassVar[str] = "d3rlpy"
    slate_size = 1

    def __init__(self, algo, config: D3rlpyConfig, *, n_items: int, click_index: int) -> None:
        self.algo = algo
        self.config = config
        self.n_items = int(n_items)
        self.click_index = int(click_index)
        self.name = f"d3rlpy-{config.algo}"

    def _greedy(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        features = encode_observations(batch, self.n_items, self.click_index)
        return np.asarray(self.algo.predict(features), dtype=np.int64).reshape(-1)

    def seed(self, seed: int | None) -> None:
        """Nothing to reset: the policy draws no random numbers."""

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False) -> Any:
        """The greedy item (int, or [N] for a batch)."""
        del deterministic  # the policy is deterministic either way
        batch, single = as_batch(obs)
        return unbatch_action(self._greedy(batch)[:, None], single, 1)

    def action_distribution(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One-hot on the greedy item: `[n_items]`, or `[N, n_items]` for a batch."""
        batch, single = as_batch(obs)
        return unbatch_probabilities(one_hot(self._greedy(batch), self.n_items), single)

    def save(self, path: str | os.PathLike) -> None:
        """Write the policy artifact `path`: `config.json`, `weights.safetensors`, `policy.json`."""

        def write(tmp: Path) -> None:
            write_json(tmp / "config.json", self.config.to_dict())
            tensors = {
                f"{name}.{key}": value.detach().cpu()
                for name, module in _modules(self.algo).items()
                for key, value in module.state_dict().items()
            }
            write_tensors(tmp / "weights.safetensors", tensors)

        save_policy(path, self.kind, {"n_items": self.n_items, "click_index": self.click_index}, write)

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: dict, device: str = "cpu") -> D3rlpyPolicy:
        import torch

        where = str(artifact.root / "policy.json")
        fields = check_fields(manifest["config"], {"n_items": int, "click_index": int}, where=where)
        if sorted(fields) != ["click_index", "n_items"] or fields["n_items"] < 1:
            raise CheckpointError(f"{where}: needs 'n_items' (positive) and 'click_index'")
        config = dataclass_from_json(
            D3rlpyConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json")
        )
        config = dataclasses.replace(config, device=device)
        algo = build_algorithm(config, fields["n_items"], device)
        tensors = artifact.read_tensors("weights.safetensors", framework="pt")
        for name, module in _modules(algo).items():
            state = {
                key[len(name) + 1 :]: value for key, value in tensors.items() if key.startswith(f"{name}.")
            }
            try:
                module.load_state_dict({key: torch.as_tensor(value) for key, value in state.items()})
            except RuntimeError as error:
                raise CheckpointError(f"{artifact.root / 'weights.safetensors'}: {name}: {error}") from None
        return cls(algo, config, n_items=fields["n_items"], click_index=fields["click_index"])
