"""`SeqRecSimSet-v0`: each episode is played in one member of a family of learned simulators.

Sim2Rec (Chen et al., "Sim2Rec: A Simulator-based Decision-making Approach to Optimize Real-World
Long-term User Engagement in Sequential Recommender Systems", ICDE 2023) trains a policy across
many simulators whose hidden user behaviour differs, so that it adapts to the real one. Here the
family is built from one trained (ideally ensemble) simulator: at every `reset` a member draws

    member          ~ Uniform{0 .. K-1}         which ensemble member predicts the responses
    leave_shift     ~ U(leave_shift range)      added to the leave logit (leave sensitivity)
    position_decay  ~ U(range)                  theta in P(position k) ∝ theta^k exp(x_k) (position bias)
    satiation_rate  ~ U(range)                  click-utility penalty per unit of similar recent consumption
    noise_scale     ~ U(range)                  scale of logistic noise on the click utility

(equations in `simulators.simulator`). `SimulatorSet` is that user model, a wrapper around the
members' single simulators (`simulators.simulator.LearnedSimulator`): a row reads its own member alone
(the probabilities of that member, as a one-member ensemble gives them), from the filter state and
embedded history that member carries for it. `SeqRecSimSetEnv` plays it; the parameters are in
`info["member"]` for analysis only, never in the observation.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from recsim_env.envs.seqrec import SeqRecEnv
from recsim_env.errors import ArgumentError
from simulators.env import learned_user_model
from simulators.simulator_set import SimulatorSet


@dataclass(frozen=True, kw_only=True)
class SimSetConfig:
    """Ranges `(low, high)` of the hidden behaviour parameters drawn at each reset."""

    leave_shift: tuple[float, float] = (-1.5, 1.5)
    """Added to the leave logit: below 0 users stay longer, above 0 they leave sooner."""
    position_decay: tuple[float, float] = (0.5, 1.0)
    """theta of the position bias theta^k (1: none; only matters for slates)."""
    satiation_rate: tuple[float, float] = (0.0, 2.0)
    """Click-utility penalty per unit of (decayed) similarity to recently consumed items."""
    noise_scale: tuple[float, float] = (0.0, 1.0)
    """Scale of the logistic noise added to each step's click utility."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if (
                not isinstance(value, tuple | list)
                or len(value) != 2
                or any(
                    isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                    for v in value
                )
            ):
                raise ArgumentError(
                    f"simset.{name} must be a pair (low, high) of finite numbers, got {value!r}"
                )
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        for name, (low, high) in asdict(self).items():
            if not low <= high:
                raise ValueError(f"SimSetConfig field {name!r}: low {low} > high {high}")
        if self.position_decay[0] <= 0 or self.position_decay[1] > 1:
            raise ValueError("SimSetConfig field 'position_decay' must lie in (0, 1]")
        if self.satiation_rate[0] < 0 or self.noise_scale[0] < 0:
            raise ValueError("SimSetConfig fields 'satiation_rate' and 'noise_scale' must be >= 0")

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {name: (float(low), float(high)) for name, (low, high) in asdict(self).items()}


DEFAULT_WORLD_STEPS = 20_000
DEFAULT_CONFIG = {"ensemble_size": 3, "d_model": 32, "epochs": 3, "seed": 0}
"""The base simulator of `gym.make("SeqRecSimSet-v0")` without arguments: 3 members trained on
20,000 uniform-policy steps of the default world."""


def default_world_simulator():
    """The default base simulator (trained once, then loaded from the simulator cache)."""
    from simulators.checkpoint import load, save
    from simulators.config import SimulatorConfig
    from simulators.env import cache_dir
    from simulators.train import fit

    config = SimulatorConfig(**DEFAULT_CONFIG)
    # Keyed by the whole config, so a change of `SimulatorConfig`'s defaults trains a new one.
    from recsim_env.checkpoint import FORMAT_VERSION
    from simulators.checkpoint import FORMAT

    # A new artifact or simulator format retrains.
    fields = {**config.to_dict(), "artifact_format": FORMAT_VERSION, "simulator_format": FORMAT}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    directory = cache_dir() / f"world-default-simset-{DEFAULT_WORLD_STEPS}-{key}"
    if (directory / "manifest.json").is_file():
        return load(directory)
    from recsim_env.world.logging import log_world

    logs = log_world("uniform", steps=DEFAULT_WORLD_STEPS, seed=0, progress=False)
    simulator = fit(logs, config).simulator
    save(simulator, directory)
    return simulator


class SeqRecSimSetEnv(SeqRecEnv):
    """`SeqRec-v0` whose user model is a member of a simulator set, redrawn at every reset.

    ## Description
    As `SeqRec-v0` on a learned simulator (same observation, action, reward and info contract),
    except that each episode's users behave according to one member of the family described in
    the module docstring.

    ## Info
    Everything `SeqRec-v0` reports, plus `member`: a dict of the episode's hidden parameters
    (`member`, `leave_shift`, `position_decay`, `satiation_rate`, `noise_scale`), for analysis only.

    ## Arguments
    - `simulator`, `dataset`, `simulator_config`: the base simulator, as for `SeqRec-v0`
      (`simulator="learned"` with `dataset`, or a saved simulator's directory). Without them: a
      3-member simulator learned from 20,000 uniform-policy steps of the default world, trained on
      first use and kept in the simulator cache (`simulators.env.cache_dir()`).
    - `simset`: a `SimSetConfig` or dict of its fields (the parameter ranges).
    - every other `SeqRec-v0` argument.

    ## Version History
    - v0: initial version.
    """

    def __init__(
        self,
        *,
        simulator: Any = None,
        dataset: Any = None,
        simulator_config: Any = None,
        simset: SimSetConfig | Mapping[str, Any] | None = None,
        reward: str | Mapping[str, float] = "click",
        **env_kwargs: Any,
    ) -> None:
        if isinstance(simset, Mapping):
            unknown = sorted(set(simset) - {f.name for f in fields(SimSetConfig)})
            if unknown:
                raise ArgumentError(
                    f"simset: unknown field(s) {unknown}; known: {[f.name for f in fields(SimSetConfig)]}"
                )
            simset = SimSetConfig(**simset)
        elif simset is not None and not isinstance(simset, SimSetConfig):
            raise ArgumentError(
                f"simset must be a SimSetConfig or a dict of its fields, got {type(simset).__name__}"
            )
        if simulator is None and dataset is None:
            if simulator_config is not None:
                raise ValueError("argument 'simulator_config' needs 'dataset'")
            simulator = default_world_simulator()
        self.simset = simset or SimSetConfig()
        base, reward = learned_user_model(
            dataset=dataset,
            simulator=simulator,
            simulator_config=simulator_config,
            uncertainty_penalty=0.0,
            reward=reward,
        )
        model = SimulatorSet.of(base, self.simset.ranges())
        super().__init__(user_model=model, reward=reward, **env_kwargs)

    def member_parameters(self) -> dict[str, float]:
        """The current episode's hidden behaviour parameters."""
        params = self.user_state.parameters
        return {name: (int(v[0]) if name == "member" else float(v[0])) for name, v in params.items()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        info["member"] = self.member_parameters()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        info["member"] = self.member_parameters()
        return obs, reward, terminated, truncated, info
