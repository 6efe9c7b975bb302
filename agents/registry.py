"""The agents `seqrec train --agent NAME` trains: one registry, read by the command.

An agent is a config dataclass and a training function `fit(config, data, progress) -> (policy, info)`
that returns an `agents.Policy` (saved with `policy.save(out)`, loaded back by `agents.load_policy`)
and a JSON-able summary. `data` is the logs of `--data` for offline agents, else None. Adding an
agent is its package plus one `AgentSpec` (in `BUILT_IN_AGENTS` here, or `register_agent` in a plugin):

    register_agent(AgentSpec("toy", config="my_pkg.toy:ToyConfig", fit="my_pkg.toy:fit", needs_data=True))

`rl` (PPO / A2C / DQN on Stable-Baselines3 or RLlib, with `--backend` and `--algo`) is the online agent
of `agents.training` and is not in this registry: it trains through `agents.training.train`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AgentSpec:
    """How the command builds and trains one agent (targets are `"module:name"`, imported when used)."""

    name: str
    config: str
    """The agent's config dataclass; `--algo-config` JSON fills its fields (unknown keys refused)."""
    fit: str
    """`fit(config, data, progress) -> (policy, info)`."""
    needs_data: bool
    """Offline agents train on `--data`; the others (simulator-trained) must not get it."""
    summary: str = ""
    """One line for `seqrec train --help`."""

    def load(self, target: str) -> Any:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def config_class(self) -> type:
        return self.load(self.config)

    @property
    def fit_function(self) -> Callable[..., tuple[Any, dict]]:
        return self.load(self.fit)


AGENTS: dict[str, AgentSpec] = {}


def register_agent(spec: AgentSpec) -> None:
    """Add (or replace) an agent of `seqrec train --agent`."""
    if not spec.name.isidentifier() or spec.name == "rl":
        raise ValueError(f"agent name {spec.name!r}: must be an identifier other than 'rl'")
    AGENTS[spec.name] = spec


def _fit_dt4ier(config, data, progress: bool):
    from agents.dt4ier import train, trajectories_from_logs

    policy, stats = train(config, trajectories_from_logs(data, config), progress=progress)
    return policy, {
        "steps": stats["steps"],
        "trajectories": stats["trajectories"],
        "final_ce": stats["final_ce"],
    }


def _fit_tscac(config, data, progress: bool):
    from agents.tscac import train

    policy, stats = train(config, data, progress=progress)
    return policy, {"thresholds": stats.get("thresholds")}


def _fit_sim2rec(config, data, progress: bool):
    from agents.sim2rec import train

    del data
    return train(config, progress=progress), {"variant": config.variant, "env": config.env}


BUILT_IN_AGENTS = (
    AgentSpec(
        "dt4ier", "agents.dt4ier:DT4IERConfig", "agents.registry:_fit_dt4ier", needs_data=True,
        summary="Decision transformer for immediate and retention rewards, offline from --data logs",
    ),
    AgentSpec(
        "tscac", "agents.tscac:TSCACConfig", "agents.registry:_fit_tscac", needs_data=True,
        summary="two-stage constrained actor-critic, offline from --data logs with propensities",
    ),
    AgentSpec(
        "sim2rec", "agents.sim2rec:Sim2RecConfig", "agents.registry:_fit_sim2rec", needs_data=False,
        summary="PPO over a set of simulators with a context encoder (SeqRecLTS-v0 or a learned simulator set)",
    ),
    AgentSpec(
        "supervised", "agents.supervised:SupervisedConfig", "agents.supervised:train", needs_data=True,
        summary="the practitioner's baseline: a SASRec click model on --data logs, recommending its argmax",
    ),
    AgentSpec(
        "d3rlpy", "agents.d3rlpy:D3rlpyConfig", "agents.d3rlpy:train", needs_data=False,
        summary="a d3rlpy algorithm (DiscreteCQL, DiscreteBC, DQN) on a Minari world dataset (algo_config 'dataset')",
    ),
    AgentSpec(
        "retrieval", "agents.retrieval:RetrievalConfig", "agents.retrieval:train", needs_data=False,
        summary="retrieve-then-rank for large catalogues: SVD item embeddings + exact MIPS candidates, a PPO or DQN ranker",
    ),
)  # fmt: skip
"""The agents this package ships; each is one entry (a plugin calls `register_agent` instead)."""

for _spec in BUILT_IN_AGENTS:
    register_agent(_spec)
