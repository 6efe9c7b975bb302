"""The options of `seqrec ope-report` and their checks: every option is refused, naming it, before any file is read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recsim_env.errors import ArgumentError

MAX_ROUNDS = 10_000_000
"""Largest `--max-rounds`: the scored arrays are n * N * K floats."""
MAX_HORIZON = 10_000
"""Largest `--horizon` (steps of a session evaluated)."""
DEFAULT_CVAR_ALPHAS = (0.1, 0.3)
"""The CVaR tail shares of the report when `--cvar-alpha` is not given."""


@dataclass(frozen=True, kw_only=True)
class OPEReportOptions:
    """The options of `seqrec ope-report` (see `evaluation.cli.ope_report_command` for their flags).

    Every option is checked on construction, before any file is read; a bad one raises ArgumentError whose
    message starts with the option's flag.
    """

    logs: Path
    """Log file or directory (CSV, TSV, Parquet, RecBole)."""
    policy: list[str]
    """Candidates: 'uniform', a saved `agents.Policy` directory, a .npy action distribution or a sparse .npz
    (`evaluation.cli_inputs.read_sparse_npz`) each."""
    out: Path
    """Output directory of the report (only checked here: it must not be a file)."""
    reward: str | None = None
    """Feedback column used as reward (None: click, else the first)."""
    estimate_pscore: bool = False
    """Without a propensity column, use empirical item frequencies as propensities."""
    max_rounds: int = 20_000
    """Evaluate on a seeded random subsample of at most this many rows (whole sessions when the log has them)."""
    n_folds: int = 3
    """Cross-fitting folds of the reward model."""
    alpha: float = 0.05
    """Significance level (0.05: 95% intervals)."""
    n_bootstrap: int = 1000
    """Bootstrap replicates per interval."""
    min_ess: float = 100.0
    """Warn below this effective sample size."""
    lambda_: float = 100.0
    """Switch-DR threshold (bandit and sequential) and DRos shrinkage."""
    seed: int = 0
    """Seed of the subsample, folds, reward model, FQE and bootstrap."""
    history_len: int = 20
    """Observation history length a saved policy was trained with."""
    sequential: bool = True
    """With sessions in the log: sequential estimators, FQE and the risk section."""
    horizon: int = 20
    """Steps of each session evaluated (its first H)."""
    gamma: float = 1.0
    """Discount factor of the session return."""
    fqe_iterations: int | None = None
    """FQE's Bellman backups (None: the horizon)."""
    fqe_steps: int = 200
    """FQE's gradient steps per backup."""
    session_gap_hours: float | None = None
    """Without a session_id column: a gap of more than this many hours starts a session (None: no sessions)."""
    cvar_alpha: list[float] | tuple[float, ...] | None = None
    """Tail shares of the CVaR rows (None or empty: `DEFAULT_CVAR_ALPHAS`)."""
    rank_by: str | None = None
    """Estimator whose lower bound ranks the candidates (None: seq-Switch-DR with sessions, else DR)."""
    action_embedding: Path | None = None
    """One integer embedding value per item (.npy, .parquet or .csv): adds MIPS and SNMIPS (None: without)."""

    @property
    def cvar_alphas(self) -> tuple[float, ...]:
        """The CVaR tail shares the report uses: `cvar_alpha`, or `DEFAULT_CVAR_ALPHAS`."""
        return tuple(self.cvar_alpha) if self.cvar_alpha else DEFAULT_CVAR_ALPHAS

    def __post_init__(self) -> None:
        from evaluation.ope.checks import MAX_BOOTSTRAP_SAMPLES
        from recsim_env.checks import check_integer, check_real

        policies = [self.policy] if isinstance(self.policy, str) else list(self.policy)
        if not policies:
            raise ArgumentError("--policy: give at least one policy to evaluate")
        for p in policies:
            if p != "uniform" and not Path(p).is_dir() and Path(p).suffix.lower() not in (".npy", ".npz"):
                raise ArgumentError(
                    f"--policy {p!r}: expected 'uniform', a saved policy directory or a .npy action-distribution "
                    "array, or a sparse .npz (items, probs, rest)"
                )
        seen: set[str] = set()
        for p in policies:
            key = p if p == "uniform" else str(Path(p).resolve())
            if key in seen:
                raise ArgumentError(f"--policy {p!r} is given twice: each candidate once")
            seen.add(key)
        if self.out.exists() and not self.out.is_dir():
            raise ArgumentError(f"--out: {self.out} exists and is not a directory")
        check_integer("--max-rounds", self.max_rounds, low=1, high=MAX_ROUNDS)
        check_integer("--n-folds", self.n_folds, low=1)
        check_real("--alpha", self.alpha, low=0.0, high=1.0, low_open=True, high_open=True)
        check_integer("--n-bootstrap", self.n_bootstrap, low=1, high=MAX_BOOTSTRAP_SAMPLES)
        check_real("--min-ess", self.min_ess, low=0.0)
        check_real("--lambda", self.lambda_, low=0.0, allow_inf=True)
        check_integer("--seed", self.seed, low=0, high=2**32 - 1 - self.n_folds)
        check_integer("--history-len", self.history_len, low=1, high=1 << 20)
        check_integer("--horizon", self.horizon, low=1, high=MAX_HORIZON)
        check_real("--gamma", self.gamma, low=0.0, high=1.0)
        if self.fqe_iterations is not None:
            check_integer("--fqe-iterations", self.fqe_iterations, low=1, high=100_000)
        check_integer("--fqe-steps", self.fqe_steps, low=1, high=1_000_000)
        if self.session_gap_hours is not None:
            check_real("--session-gap-hours", self.session_gap_hours, low=0.0, low_open=True)
        if not self.cvar_alphas:
            raise ArgumentError("--cvar-alpha: give at least one tail share in (0, 1]")
        for a in self.cvar_alphas:
            check_real("--cvar-alpha", a, low=0.0, high=1.0, low_open=True)
        if self.rank_by is not None and self.rank_by not in RANKABLE:
            raise ArgumentError(f"--rank-by {self.rank_by!r}: expected one of {', '.join(RANKABLE)}")
        if self.action_embedding is not None:
            if self.action_embedding.suffix.lower() not in EMBEDDING_SUFFIXES:
                raise ArgumentError(
                    f"--action-embedding {self.action_embedding}: expected a {', '.join(EMBEDDING_SUFFIXES)} file "
                    "of one integer embedding value per item"
                )
            if not self.action_embedding.is_file():
                raise ArgumentError(f"--action-embedding {self.action_embedding}: no such file")
        elif self.rank_by in EMBEDDING_NAMES:
            raise ArgumentError(f"--rank-by {self.rank_by!r}: MIPS estimates need --action-embedding")


EMBEDDING_SUFFIXES = (".npy", ".parquet", ".csv")
"""File types `--action-embedding` reads."""
EMBEDDING_NAMES = ("MIPS", "SNMIPS")
"""The estimators the report adds with `--action-embedding`."""


def bandit_names() -> tuple[str, ...]:
    """Names of the bandit estimators the report runs (per decision)."""
    from evaluation.ope import bandit_estimators

    return tuple(e.estimator_name for e in bandit_estimators())


def sequential_names() -> tuple[str, ...]:
    """Names of the sequential estimators the report runs on sessions (per session)."""
    from evaluation.session_ope import SEQUENTIAL_NAMES

    return SEQUENTIAL_NAMES


RANKABLE = bandit_names() + EMBEDDING_NAMES + sequential_names()
"""Estimators `--rank-by` may name: the bandit ones and MIPS's (per decision), the sequential ones (per session)."""
