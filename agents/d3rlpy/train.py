"""Training a d3rlpy algorithm on a Minari world dataset: the d3rlpy agent of `seqrec train`."""

from __future__ import annotations

from typing import Any

from agents.d3rlpy.config import D3rlpyConfig
from agents.d3rlpy.data import to_mdp_dataset
from agents.d3rlpy.policy import D3rlpyPolicy, build_algorithm


def train(config: D3rlpyConfig, data=None, progress: bool = True) -> tuple[D3rlpyPolicy, dict[str, Any]]:
    """Fit `config.algo` on `config.dataset` for `config.steps` gradient steps; the policy and a summary.

    The `fit` of the agent registry; `data` (`--data`) does not apply: the Minari dataset holds the
    observations. Seeded through `d3rlpy.seed`; d3rlpy writes no log files.
    """
    import d3rlpy

    del data
    d3rlpy.seed(config.seed)
    mdp, facts = to_mdp_dataset(config.dataset)
    algo = build_algorithm(config, facts["n_items"], config.device)
    history = algo.fit(
        mdp,
        n_steps=config.steps,
        n_steps_per_epoch=min(config.steps_per_epoch, config.steps),
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=progress,
        save_interval=config.steps + 1,
    )
    last = history[-1][1] if history else {}
    policy = D3rlpyPolicy(algo, config, n_items=facts["n_items"], click_index=facts["click_index"])
    return policy, {
        "algo": config.algo,
        "steps": config.steps,
        "transitions": int(mdp.transition_count),
        "final_metrics": {key: float(value) for key, value in last.items()},
    }
