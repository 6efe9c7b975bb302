"""`seqrec train`: one `TrainConfig`, two backends (Stable-Baselines3 in process, Ray RLlib across workers).

    from agents.training import TrainConfig, train
    result = train(TrainConfig(backend="sb3", algo="ppo", stop_timesteps=50_000), out="runs/ppo")

Backends are imported when used, so this package stays light.
"""

from agents.training.config import ALGOS, BACKENDS, TrainConfig, TrainResult, check_env_config
from agents.training.run import train

__all__ = ["ALGOS", "BACKENDS", "TrainConfig", "TrainResult", "check_env_config", "train"]
