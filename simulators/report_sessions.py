"""Free-running sessions of a learned simulator beside a log's: the fidelity report's session section.

`session_metrics` is the Kolmogorov-Smirnov distance between the session lengths and return gaps the
simulator produces (shown items drawn from the logged exposure frequencies, i.e. the logging policy's
marginal) and the logged ones.
"""

from __future__ import annotations

import numpy as np

from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.rollout import StepObserver, VectorStep, run_episodes
from simulators.data import ExposureLog
from simulators.ensemble import EnsembleSimulator
from simulators.simulator import LearnedSimulator


def simulate_sessions(
    simulator: LearnedSimulator | EnsembleSimulator,
    item_weights: np.ndarray,
    *,
    episodes: int,
    seed: int,
    max_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Session lengths and return gaps (days) of two-session episodes in the simulator, shown items drawn
    from `item_weights`: every session that ends until `episodes` episodes have (the first to end)."""
    num_envs = min(episodes, 256)
    env = SeqRecVectorEnv(
        num_envs=num_envs,
        user_model=simulator,
        max_steps=max_steps,
        sessions_per_episode=2,
        history_len=simulator.history_len,
    )
    rng = np.random.default_rng(seed)
    p = item_weights / item_weights.sum()
    sessions = _Sessions(num_envs)
    run_episodes(
        env,
        act=lambda obs: rng.choice(len(p), size=num_envs, p=p),
        observer=sessions,
        seed=seed,
        n_episodes=episodes,
        quota="first_done",
    )
    return np.asarray(sessions.lengths), np.asarray(sessions.gaps)


class _Sessions(StepObserver):
    """`simulate_sessions`' observer: the length of every session that ends, and the return gap of those
    that end within their episode."""

    def __init__(self, num_envs: int) -> None:
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.lengths: list[int] = []
        self.gaps: list[float] = []

    def on_step(self, step: VectorStep) -> None:
        self.steps += step.live
        info = step.info
        if "_return_gap" in info:
            ended = info["_return_gap"] & step.live
            self.lengths.extend(self.steps[ended].tolist())
            self.gaps.extend(info["return_gap"][ended & ~step.truncated & ~step.terminated].tolist())
            self.steps[ended] = 0
        self.steps[step.done] = 0


def logged_sessions(log: ExposureLog) -> tuple[np.ndarray, np.ndarray]:
    """Session lengths (sessions that ended) and return gaps (days) in a log."""
    n = len(log.items)
    first = np.zeros(n, dtype=bool)
    first[log.offsets[:-1][log.lengths() > 0]] = True
    end = (log.leave > 0) | ~log.leave_known | log.return_gap_known
    last_of_user = np.zeros(n, dtype=bool)
    last_of_user[log.offsets[1:][log.lengths() > 0] - 1] = True
    end |= last_of_user
    starts = np.flatnonzero(first | np.r_[False, end[:-1]])
    ends = np.flatnonzero(end)
    lengths = ends - starts + 1 if len(starts) == len(ends) else np.zeros(0, int)
    gaps = log.return_gap[log.return_gap_known]
    return lengths.astype(np.int64), gaps.astype(np.float64)


def session_metrics(
    simulator: LearnedSimulator | EnsembleSimulator, log: ExposureLog, *, episodes: int, seed: int
) -> dict:
    """KS distances between simulated and logged session lengths and return gaps."""
    from scipy.stats import ks_2samp

    weights = np.bincount(log.items, minlength=simulator.n_items).astype(float) + 1e-3
    logged_lengths, logged_gaps = logged_sessions(log)
    sim_lengths, sim_gaps = simulate_sessions(
        simulator, weights, episodes=episodes, seed=seed, max_steps=simulator.schema.max_session_length
    )
    result = {
        "session_length": {
            "ks": float(ks_2samp(sim_lengths, logged_lengths).statistic)
            if len(logged_lengths)
            else float("nan"),
            "simulated_mean": float(sim_lengths.mean()),
            "logged_mean": float(logged_lengths.mean()) if len(logged_lengths) else float("nan"),
        },
        "_samples": {
            "sim_lengths": sim_lengths,
            "logged_lengths": logged_lengths,
            "sim_gaps": sim_gaps,
            "logged_gaps": logged_gaps,
        },
    }
    if len(logged_gaps) and len(sim_gaps):
        result["return_gap_days"] = {
            "ks": float(ks_2samp(sim_gaps, logged_gaps).statistic),
            "simulated_mean": float(sim_gaps.mean()),
            "logged_mean": float(logged_gaps.mean()),
        }
    return result
