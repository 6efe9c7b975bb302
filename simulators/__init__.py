"""Learned user simulators built from logged interactions (builds on `recsim_env`).

    >>> import simulators
    >>> result = simulators.fit(logs, simulators.SimulatorConfig(ensemble_size=3))
    >>> simulators.save(result.simulator, "sim/")
    >>> sim = simulators.load("sim/")                      # checks the manifest
    >>> env = gym.make("SeqRec-v0", simulator="sim/")      # or dataset="ml-100k", simulator="learned"

Names are resolved lazily (PEP 562), so `import simulators.cli` (for `seqrec --help`) does not import
torch. See docs/simulators.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsim_env.lazy import lazy_exports

_EXPORTS = {
    "SimulatorConfig": "config",
    "DataSchema": "data",
    "ExposureLog": "data",
    "FeatureSpec": "features",
    "ResponseModel": "response_model",
    "LearnedSimulator": "simulator",
    "EnsembleSimulator": "ensemble",
    "SimulatorSet": "simulator_set",
    "FitResult": "train",
    "fit": "train",
    "save": "checkpoint",
    "load": "checkpoint",
    "verify": "checkpoint",
    "write_report": "report",
    "SimSetConfig": "simset",
    "SeqRecSimSetEnv": "simset",
}

__all__ = [
    "DataSchema",
    "EnsembleSimulator",
    "ExposureLog",
    "FitResult",
    "LearnedSimulator",
    "ResponseModel",
    "SeqRecSimSetEnv",
    "SimSetConfig",
    "SimulatorSet",
    "SimulatorConfig",
    "FeatureSpec",
    "fit",
    "load",
    "save",
    "verify",
    "write_report",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from simulators.checkpoint import load, save, verify
    from simulators.config import SimulatorConfig
    from simulators.data import DataSchema, ExposureLog
    from simulators.ensemble import EnsembleSimulator
    from simulators.features import FeatureSpec
    from simulators.report import write_report
    from simulators.response_model import ResponseModel
    from simulators.simset import SeqRecSimSetEnv, SimSetConfig
    from simulators.simulator import LearnedSimulator
    from simulators.simulator_set import SimulatorSet
    from simulators.train import FitResult, fit
