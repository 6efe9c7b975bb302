"""The option checks of `seqrec ope-report`: every option is refused, naming it, before any file is read."""

from __future__ import annotations

from pathlib import Path

from recsim_env.errors import ArgumentError

MAX_ROUNDS = 10_000_000
"""Largest `--max-rounds`: the scored arrays are n * N * K floats."""
MAX_HORIZON = 10_000
"""Largest `--horizon` (steps of a session evaluated)."""


def check_options(
    *,
    policy: str | list[str],
    out: Path,
    max_rounds: int,
    n_folds: int,
    alpha: float,
    n_bootstrap: int,
    min_ess: float,
    lambda_: float,
    seed: int,
    history_len: int,
    horizon: int = 20,
    gamma: float = 1.0,
    fqe_iterations: int | None = None,
    fqe_steps: int = 200,
    session_gap_hours: float | None = None,
    cvar_alpha: list[float] | tuple[float, ...] = (0.1, 0.3),
    rank_by: str | None = None,
) -> None:
    """Refuse bad `seqrec ope-report` options before any file is read; each message starts with the option."""
    from evaluation.ope.checks import MAX_BOOTSTRAP_SAMPLES
    from recsim_env.checks import check_integer, check_real

    policies = [policy] if isinstance(policy, str) else list(policy)
    if not policies:
        raise ArgumentError("--policy: give at least one policy to evaluate")
    for p in policies:
        if p != "uniform" and not Path(p).is_dir() and Path(p).suffix.lower() != ".npy":
            raise ArgumentError(
                f"--policy {p!r}: expected 'uniform', a saved policy directory or a .npy action-distribution array"
            )
    seen: set[str] = set()
    for p in policies:
        key = p if p == "uniform" else str(Path(p).resolve())
        if key in seen:
            raise ArgumentError(f"--policy {p!r} is given twice: each candidate once")
        seen.add(key)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"--out: {out} exists and is not a directory")
    check_integer("--max-rounds", max_rounds, low=1, high=MAX_ROUNDS)
    check_integer("--n-folds", n_folds, low=1)
    check_real("--alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    check_integer("--n-bootstrap", n_bootstrap, low=1, high=MAX_BOOTSTRAP_SAMPLES)
    check_real("--min-ess", min_ess, low=0.0)
    check_real("--lambda", lambda_, low=0.0, allow_inf=True)
    check_integer("--seed", seed, low=0, high=2**32 - 1 - n_folds)
    check_integer("--history-len", history_len, low=1, high=1 << 20)
    check_integer("--horizon", horizon, low=1, high=MAX_HORIZON)
    check_real("--gamma", gamma, low=0.0, high=1.0)
    if fqe_iterations is not None:
        check_integer("--fqe-iterations", fqe_iterations, low=1, high=100_000)
    check_integer("--fqe-steps", fqe_steps, low=1, high=1_000_000)
    if session_gap_hours is not None:
        check_real("--session-gap-hours", session_gap_hours, low=0.0, low_open=True)
    if not cvar_alpha:
        raise ArgumentError("--cvar-alpha: give at least one tail share in (0, 1]")
    for a in cvar_alpha:
        check_real("--cvar-alpha", a, low=0.0, high=1.0, low_open=True)
    if rank_by is not None and rank_by not in RANKABLE:
        raise ArgumentError(f"--rank-by {rank_by!r}: expected one of {', '.join(RANKABLE)}")


def bandit_names() -> tuple[str, ...]:
    """Names of the bandit estimators the report runs (per decision)."""
    from evaluation.ope import bandit_estimators

    return tuple(e.estimator_name for e in bandit_estimators())


def sequential_names() -> tuple[str, ...]:
    """Names of the sequential estimators the report runs on sessions (per session)."""
    from evaluation.session_ope import SEQUENTIAL_NAMES

    return SEQUENTIAL_NAMES


RANKABLE = bandit_names() + sequential_names()
"""Estimators `--rank-by` may name: the bandit ones (per decision) and the sequential ones (per session)."""
