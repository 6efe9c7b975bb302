"""`SimulatorConfig`: how a learned simulator is built and trained (saved as `config.json`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from recsim_env.checkpoint import decode_tree
from recsim_env.checks import check_bool, check_choice, check_config_fields, check_integer, check_real
from recsim_env.encoders.item_text import CONTENT_SOURCES, parse_columns, resolve_content_source

CALIBRATIONS = ("platt", "temperature", "none")


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """Backbone, heads, training and data-preparation settings of a learned user simulator."""

    encoder: str = "sasrec"
    """Sequence encoder backbone (a name of `recsim_env.encoders.build`)."""
    history_len: int = 20
    """L: exposures of history the encoder reads."""
    window_stride: int | None = 4
    """Training windows of up to `history_len + 1` exposures end every this many exposures and train on
    their last `window_stride` targets (None: `history_len`, windows that overlap by one exposure). With 1,
    every target is scored from the last position of a right-aligned window (left-padded near the start
    of a sequence), exactly as a simulator step scores the slate; with 4, each target still has at least
    `history_len - 3` exposures of history when the user has them, and an epoch is 4x shorter, which pays
    for the interest filter's sequential updates. Each user's windows are phase-shifted so that the final
    exposure (a leave: the log ends there) does not always land on a window's last position, whose leave
    head would learn that artefact."""
    user_features: bool = True
    """Read the users table's features (`simulators.data.FeatureSpec`): a linear projection of them is
    added to the encoder's state before the heads, and environments observe them (`user_features=True`)."""
    item_features: bool = True
    """Read the items table's features (`simulators.data.FeatureSpec`: categories, genres, numbers): a linear
    projection of them is added to each item's learned embedding, and every history position reads its
    item's features next to its feedback. Items seen in few logs then borrow strength from similar ones."""
    item_content: str = "auto"
    """Item content the encoder reads (docs/item_text.md): "catalogue" (the item table's features, as
    `item_features` encodes them), "text" (`item_text` embedded), "none", or "auto" ("text" with
    `item_text`, else "catalogue" for an encoder that needs content, such as H2Rec, else "none")."""
    item_text: str | None = None
    """Comma-separated item table columns embedded by the packaged all-MiniLM-L6-v2 (the `text` extra) into
    the items' content (`recsim_env.encoders.item_text`), as `seqrec train-encoder --item-text`."""
    click_pooling: bool = True
    """Add to the encoder's state a projection of the recency-weighted means of the clicked and of the
    unclicked history items' vectors (learned weight per distance back): a direct path for "the user likes
    what they clicked", next to the encoder (docs/simulators.md)."""
    interest_filter: bool = True
    """Add a learned interest filter (`simulators.interest_filter`): a Gaussian belief over a latent interest,
    updated by each history exposure's click and continuous signals as an extended Kalman filter does, with
    drift and satiation, that shifts and tempers the click logit. It reads the user's whole history, not
    only the encoder's window: a running simulator carries its state across the episode, and training
    starts each window's filter where the user's earlier exposures left it (docs/simulators.md)."""
    filter_dim: int = 16
    """K: dimension of the interest filter's latent interest."""
    d_model: int = 32
    """Width D of the encoder and the heads."""
    n_layers: int = 1
    """Encoder blocks (when the encoder has them)."""
    n_heads: int = 1
    """Attention heads (when the encoder has them)."""
    dropout: float = 0.1
    """Dropout in the encoder and heads during training."""
    ensemble_size: int = 1
    """K models; with K > 1 each is trained on a bootstrap resample of the training users."""
    epochs: int = 20
    """Most passes over the training windows (early stopping on validation loss)."""
    patience: int = 3
    """Epochs without validation improvement before stopping."""
    batch_size: int = 256
    """Windows per optimisation step."""
    learning_rate: float = 2e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    valid_fraction: float = 0.1
    """Share of users held out for early stopping and calibration."""
    test_fraction: float = 0.1
    """Share of users held out for the fidelity report."""
    negative_rate: float = 1.0
    """Positive-only data: unobserved items inserted as unclicked exposures per observed one."""
    session_gap_hours: float = 1.0
    """Data without `session_id`: an inactivity gap longer than this starts a new session."""
    click_loss_weight: float = 20.0
    """Weight of the click head's negative log-likelihood in the training loss (the other heads weigh 1).
    The heads share the encoder; with equal weights the other heads' item effects shape it and the click
    head barely reads the history (docs/simulators.md)."""
    early_stopping: str = "click"
    """Validation loss that early stopping watches: `all`, the training objective (heads summed, click
    weighted by `click_loss_weight`), or `click` alone."""
    calibration: str = "platt"
    """Post-hoc calibration of every binary head on validation users: `platt` (a temperature and a bias
    per head), `temperature` (the temperature alone) or `none`. The bias matters: trained models
    predict clicks too often on average, which a temperature cannot correct (docs/simulators.md)."""
    max_train_minutes: float = 8.0
    """Wall-clock budget for training all members; training stops at the end of the epoch that passes it."""
    seed: int = 0
    """Seed of the split, the negatives, the bootstrap and the weights (CPU runs are bit-for-bit reproducible)."""

    def __post_init__(self) -> None:
        sizes = ("history_len", "filter_dim", "d_model", "n_layers", "n_heads", "ensemble_size", "epochs")
        check_config_fields(self, sizes + ("batch_size",), check_integer, low=1)
        check_config_fields(self, ("window_stride",), check_integer, low=1, optional=True)
        check_config_fields(self, ("patience",), check_integer, low=0)
        check_config_fields(self, ("dropout",), check_real, low=0.0, high=1.0, high_open=True)
        positive = ("learning_rate", "session_gap_hours", "click_loss_weight")
        check_config_fields(self, positive, check_real, low=0.0, low_open=True)
        check_config_fields(self, ("max_train_minutes",), check_real, low=0.0, low_open=True, allow_inf=True)
        check_config_fields(self, ("weight_decay", "negative_rate"), check_real, low=0.0)
        fractions = ("valid_fraction", "test_fraction")
        check_config_fields(self, fractions, check_real, low=0.0, high=0.5, low_open=True, high_open=True)
        flags = ("user_features", "item_features", "click_pooling", "interest_filter")
        check_config_fields(self, flags, check_bool)
        check_config_fields(self, ("early_stopping",), check_choice, choices=("all", "click"))
        check_config_fields(self, ("calibration",), check_choice, choices=CALIBRATIONS)
        check_config_fields(self, ("item_content",), check_choice, choices=CONTENT_SOURCES)
        if self.item_text is not None:
            parse_columns(self.item_text)
        if (self.item_text is not None and self.item_content not in ("auto", "text")) or (
            self.item_text is None and self.item_content == "text"
        ):
            raise ValueError(
                f"SimulatorConfig.item_content {self.item_content!r}: item content 'text' and item text "
                "columns (item_text) go together"
            )
        if self.item_content == "catalogue" and not self.item_features:
            raise ValueError(
                "SimulatorConfig.item_content 'catalogue' reads the item features: set item_features"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"SimulatorConfig.n_heads ({self.n_heads}) must divide d_model ({self.d_model})")

    @property
    def content_source(self) -> str:
        """What `item_content` means for this encoder: "none", "catalogue" or "text" (`resolve_content_source`)."""
        return resolve_content_source(self.item_content, self.encoder, text=self.item_text is not None)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values; a non-finite float (e.g. `max_train_minutes=inf`) is written as
        `{"__float__": "inf"}`, the form `recsim_env.checkpoint.decode_tree` reads (JSON has no inf)."""
        return {
            key: value if not isinstance(value, float) or math.isfinite(value) else {"__float__": repr(value)}
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulatorConfig:
        """Inverse of `to_dict`; an unknown key is a ValueError naming it."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"SimulatorConfig: unknown field(s) {unknown}")
        return cls(**decode_tree(d, {}, where="SimulatorConfig"))
