"""`TrainerConfig`: the settings of `recsim_env.encoders.trainer.train`, importable without torch (the
command line builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real

WINDOW_MODES = ("sliding", "last")
PROTOCOLS = ("seen_excluded", "seen_included")


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    """Optimisation, early stopping and device settings of `train`."""

    epochs: int = 200
    """Most training epochs (passes over all training windows)."""
    batch_size: int = 128
    """Training windows per step."""
    lr: float = 2e-3
    """Adam learning rate (on ML-100k, 2e-3 reaches a given validation NDCG@10 in fewer epochs than the papers' 1e-3)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    beta2: float = 0.98
    """Adam's second-moment decay (0.98 as in SASRec)."""
    patience: int = 10
    """Stop after this many epochs without a better validation NDCG@10."""
    selection_protocol: str = "seen_excluded"
    """The ranking protocol whose validation NDCG@10 early stopping watches and the restored checkpoint is
    the best of: "seen_excluded" (the SASRec / HSTU reference evaluators) or "seen_included" (RecBole's
    protocol for sequential models, and the one to use on data where users consume items again). Both
    protocols are still reported; select on the one you will deploy or compare under."""
    windows: str = "sliding"
    """"sliding": every training event is a target once (windows of max_len + 1 events ending every
    `window_stride` events); "last": only each user's most recent window, as the SASRec reference samples it."""
    window_stride: int | None = None
    """"sliding" windows end every this many events (None: max_len // 2, windows that overlap by half;
    max_len: windows that do not overlap). Overlap gives every target a context of at least
    max_len - stride events, closer to evaluation, which always reads the last max_len (RecBole trains on
    every prefix for the same reason): each event is still a target once, in the window where it is among
    the last `window_stride` positions (or in a user's earliest window), and only those positions pay
    for the output layer. On ML-100k SASRec, half overlap raised test NDCG@10 and needed fewer epochs
    (benchmarks/RESULTS.md)."""
    seed: int = 0
    """Seed of the shuffling, masking and negative sampling generators (and of torch's global RNG)."""
    device: str = "auto"
    """"auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N"."""
    compile: bool = False
    """Wrap the training loss in `torch.compile`."""
    eval_batch_size: int = 1024
    """Users per evaluation forward pass."""
    max_seconds: float | None = None
    """Stop after this much wall-clock time (None: no limit)."""
    num_threads: int | None = None
    """CPU threads for torch during training (None: leave torch's setting); 1 avoids thread thrashing on a
    busy machine."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("window_stride", "num_threads"), check_integer, low=1, optional=True)
        check_config_fields(
            self, ("epochs", "batch_size", "patience", "eval_batch_size"), check_integer, low=1
        )
        check_config_fields(self, ("lr",), check_real, low=0.0, low_open=True)
        check_config_fields(self, ("weight_decay",), check_real, low=0.0)
        check_config_fields(self, ("beta2",), check_real, low=0.0, high=1.0, low_open=True, high_open=True)
        check_config_fields(self, ("selection_protocol",), check_choice, choices=PROTOCOLS)
        check_config_fields(self, ("windows",), check_choice, choices=WINDOW_MODES)
        check_config_fields(
            self, ("max_seconds",), check_real, low=0.0, low_open=True, allow_inf=True, optional=True
        )
        resolve_device(self.device)  # validates the name


def resolve_device(name: str) -> torch.device:
    """Imports torch. `"auto"` -> CUDA when available, else CPU; otherwise `torch.device(name)` (CUDA must exist)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return device
