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
front end (`SeqRec-v0` Dict observations, a SASRec state encoder, training on `SeqRecSimSet-v0`
built from a simulator learned from world logs, evaluation in the world with `evaluate_seqrec`).

The losses (PPO's clipped objective, value, entropy and Sim2Rec's context consistency) and their
equations are in `agents.sim2rec.losses`.

Modules: `config` (`Sim2RecConfig`), `model` (the networks of both front ends), `envs` (the training
environments), `losses`, `train`, `policy` (`Sim2RecPolicy`), `evaluation` (`evaluate`,
`evaluate_seqrec`).
"""

from agents.sim2rec.config import CONTINUOUS, ENVS, HIDDEN_KEY, MAX_NETWORK_SIZE, VARIANTS, Sim2RecConfig
from agents.sim2rec.envs import (
    HiddenParameters,
    OracleObservation,
    base_simulator,
    hidden_vector,
    make_env,
    make_training_env,
    make_vector_env,
    simset_config,
    simulator_set,
    training_model,
)
from agents.sim2rec.evaluation import evaluate, evaluate_seqrec
from agents.sim2rec.losses import _consistency, _masked_mean, _normalise, gae, ppo_losses
from agents.sim2rec.model import ActorCritic, SequenceSim2RecNetwork, Sim2RecNetwork, network_class
from agents.sim2rec.policy import Sim2RecPolicy
from agents.sim2rec.train import train
from recsim_env.encoders.trainer import resolve_device

__all__ = [
    "CONTINUOUS",
    "ENVS",
    "HIDDEN_KEY",
    "MAX_NETWORK_SIZE",
    "VARIANTS",
    "ActorCritic",
    "HiddenParameters",
    "OracleObservation",
    "SequenceSim2RecNetwork",
    "Sim2RecConfig",
    "Sim2RecNetwork",
    "Sim2RecPolicy",
    "_consistency",
    "_masked_mean",
    "_normalise",
    "base_simulator",
    "evaluate",
    "evaluate_seqrec",
    "gae",
    "hidden_vector",
    "make_env",
    "make_training_env",
    "make_vector_env",
    "network_class",
    "ppo_losses",
    "resolve_device",
    "simset_config",
    "simulator_set",
    "train",
    "training_model",
]
