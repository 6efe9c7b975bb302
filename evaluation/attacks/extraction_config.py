"""`ExtractionConfig`: the settings of a model-extraction run, importable without torch (the command
line builds its options from it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real
from recsim_env.encoders.trainer_config import resolve_device
from recsim_env.errors import ArgumentError

EVAL_K = 10
"""The cutoff of overlap@10, NDCG@10 and HR@10."""
SURROGATE_MODELS = ("sasrec", "gru4rec", "hstu", "rearec")
"""Encoders a surrogate may be built as (autoregressive ones: the sampler reads the last position)."""


@dataclass(frozen=True, kw_only=True)
class ExtractionConfig:
    """Threat model, augmentation, losses and training of a model-extraction run."""

    fraction: float = 0.1
    """Share of the real users whose sequences the adversary holds, in (0, 1)."""
    budget: int = 5000
    """Victim queries the adversary may make (one query: one history in, one top-k list out)."""
    budget_curve: tuple[int, ...] = ()
    """More budgets to run both adversaries at, for the budget curve (the report always includes `budget`)."""
    list_k: int = 100
    """Length of the top-k list the victim serves per query (Yue et al. distil from the top 100)."""
    real_query_share: float = 0.3
    """Share of the few-shot adversary's budget spent on prefixes of its real sequences; the rest grows
    synthetic continuations of real prefixes."""
    augment_steps: int = 10
    """Most synthetic items grown onto each real prefix (one victim query per grown history)."""
    sampler_temperature: float = 1.0
    """Temperature of the interaction sampler's softmax when it draws the next synthetic item."""
    margin_topk: float = 0.5
    """Ranking-loss margin between consecutive items of the victim's list (Yue et al.'s lambda_1)."""
    margin_negative: float = 0.5
    """Ranking-loss margin between a listed item and an unlisted negative (Yue et al.'s lambda_2)."""
    repair_k: int = 10
    """Cutoff K of the bidirectional repair loss (the top-K lists it makes agree)."""
    repair_margin: float = 0.5
    """Margin of the repair loss's hinges."""
    repair_weight: float = 1.0
    """Weight of the bidirectional repair loss in the few-shot adversary's objective (0 turns it off)."""
    real_weight: float = 1.0
    """Weight of next-item cross-entropy on the few-shot sequences in the few-shot adversary's objective."""
    model: str = "sasrec"
    """Registered encoder the surrogate and the interaction sampler are built as."""
    max_len: int = 50
    """History length L the surrogate and the sampler read."""
    d_model: int = 64
    """Width D of the surrogate and the sampler."""
    epochs: int = 40
    """Most surrogate training epochs (passes over the query records)."""
    patience: int = 5
    """Stop after this many epochs without better agreement@10 on the held-back query records."""
    sampler_epochs: int = 60
    """Most epochs of the interaction sampler's next-item training on the few-shot sequences."""
    batch_size: int = 128
    """Query records per training step."""
    lr: float = 1e-3
    """Adam learning rate of the surrogate (Yue et al.'s)."""
    validation_share: float = 0.1
    """Share of each adversary's query records held back to pick the best epoch (no extra queries)."""
    max_seconds: float | None = None
    """Stop each surrogate's training after this much wall-clock time (None: no limit)."""
    seed: int = 0
    """Seed of the user split, the query sampling, the generation and the training."""
    device: str = "auto"
    """"auto" (CUDA when present, else CPU), "cpu" or "cuda"."""
    num_threads: int | None = None
    """CPU threads for torch (None: leave torch's setting)."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("fraction",), check_real, low=0.0, high=1.0, low_open=True, high_open=True)
        check_config_fields(
            self,
            (
                "budget",
                "list_k",
                "repair_k",
                "max_len",
                "d_model",
                "epochs",
                "patience",
                "sampler_epochs",
                "batch_size",
            ),
            check_integer,
            low=1,
        )
        check_config_fields(self, ("num_threads",), check_integer, low=1, optional=True)
        check_config_fields(self, ("real_query_share",), check_real, low=0.0, high=1.0, low_open=True)
        check_config_fields(
            self, ("validation_share",), check_real, low=0.0, high=1.0, low_open=True, high_open=True
        )
        check_config_fields(self, ("sampler_temperature", "lr"), check_real, low=0.0, low_open=True)
        check_config_fields(
            self,
            ("margin_topk", "margin_negative", "repair_margin", "repair_weight", "real_weight"),
            check_real,
            low=0.0,
        )
        check_config_fields(self, ("max_seconds",), check_real, low=0.0, low_open=True, optional=True)
        check_config_fields(self, ("model",), check_choice, choices=SURROGATE_MODELS)
        if not isinstance(self.budget_curve, tuple):
            raise ArgumentError(
                f"ExtractionConfig.budget_curve must be a tuple of budgets, got {self.budget_curve!r}"
            )
        for i, budget in enumerate(self.budget_curve):
            check_integer(f"ExtractionConfig.budget_curve[{i}]", budget, low=1)
        if self.repair_k > self.list_k:
            raise ArgumentError(
                f"ExtractionConfig.repair_k ({self.repair_k}) must not exceed list_k ({self.list_k})"
            )
        if self.list_k < EVAL_K:
            raise ArgumentError(
                f"ExtractionConfig.list_k must be at least {EVAL_K} (overlap@{EVAL_K}), got {self.list_k}"
            )
        resolve_device(self.device)

    @property
    def budgets(self) -> tuple[int, ...]:
        """Every budget the run measures, ascending (`budget` included)."""
        return tuple(sorted({*self.budget_curve, self.budget}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
