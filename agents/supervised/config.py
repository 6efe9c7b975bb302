"""The supervised click model's configuration: `SupervisedConfig` (the dataclass and its validation)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsim_env.checks import check_bool, check_choice, check_config_fields, check_integer, check_real
from recsim_env.errors import ArgumentError

KIND = "supervised"
MAX_ITEMS = 10_000_000
"""Largest catalogue a saved policy may declare (a file must not make `load` allocate at will)."""
SELECTIONS = ("auc", "loss")
DEVICES = ("auto", "cpu", "cuda")
RESERVED_ENCODER_KEYS = ("n_items", "max_len", "feedback_dim", "loss", "n_negatives")
"""Encoder fields the click model sets itself (from the data and `history_len`) or does not use (the
encoder's next-item loss: the click model trains with its own BCE)."""
_CLICK_SIGNAL = re.compile(r"^(auto|[A-Za-z_]\w*|[A-Za-z_]\w*\s*>=\s*-?[\d.]+)$")


@dataclass(frozen=True, kw_only=True)
class SupervisedConfig:
    """Everything that defines a supervised click-model training run (`agents.supervised.train`)."""

    encoder: str = "sasrec"
    """History encoder: a name in the `recsim_env.encoders` registry (sasrec, bert4rec, hstu, gru4rec, ...)."""
    encoder_config: Mapping[str, Any] = field(default_factory=dict)
    """Encoder config fields (e.g. d_model, n_layers, dropout); n_items, max_len and feedback_dim come from the data."""
    history_len: int = 20
    """L: logged exposures in a history window (as `SeqRec-v0`'s `history_len`)."""
    click_signal: str = "auto"
    """The label: a feedback column (`click`) or `column>=value` (`rating>=4`); `auto` picks `click` if
    logged, else `rating>=4` (MovieLens: a rating of 4 or 5 is a click)."""
    slate_size: int = 1
    """K: items the policy recommends per step (its K highest predicted click probabilities)."""
    exclude_seen: bool = True
    """Never recommend an item of the observed history (as the greedy baseline and a deployed system)."""
    valid_fraction: float = 0.1
    """Share of logged users held out for validation (early stopping and the reported AUC)."""
    selection: str = "auc"
    """What early stopping watches on the validation users: `auc` (higher is better) or `loss` (BCE)."""
    epochs: int = 20
    """Most passes over the training rows."""
    patience: int = 3
    """Stop after this many epochs without a better validation `selection` metric."""
    time_budget_s: float | None = None
    """Also stop after this many seconds of training (checked after every batch, so the last epoch may be cut short; None: no limit)."""
    batch_size: int = 256
    """Logged rows per gradient step."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    seed: int = 0
    """Seed of the user split, the initialisation, the minibatch order and dropout."""
    device: str = "auto"
    """`auto` (CUDA when present), `cpu` or `cuda`; CUDA trains under bf16 autocast."""

    def __post_init__(self) -> None:
        from recsim_env.encoders.registry import ENCODERS, config_class

        if not isinstance(self.encoder, str) or self.encoder.lower() not in ENCODERS:
            raise ArgumentError(
                f"SupervisedConfig.encoder: unknown encoder {self.encoder!r}; known: {', '.join(sorted(ENCODERS))}"
            )
        if not isinstance(self.encoder_config, Mapping):
            raise ArgumentError(
                f"SupervisedConfig.encoder_config must be a mapping (JSON object), got {self.encoder_config!r}"
            )
        reserved = sorted(set(self.encoder_config) & set(RESERVED_ENCODER_KEYS))
        if reserved:
            raise ArgumentError(
                f"SupervisedConfig.encoder_config: {reserved} are set by the click model, not the config"
            )
        positive = ("history_len", "slate_size", "epochs", "patience", "batch_size")
        check_config_fields(self, positive, check_integer, low=1)
        check_config_fields(self, ("seed",), check_integer, low=0)
        check_config_fields(self, ("valid_fraction",), check_real, low=0.0, high=0.5, low_open=True)
        check_config_fields(self, ("lr",), check_real, low=0.0, low_open=True)
        check_config_fields(self, ("weight_decay",), check_real, low=0.0)
        check_config_fields(self, ("time_budget_s",), check_real, low=0.0, low_open=True, optional=True)
        check_config_fields(self, ("exclude_seen",), check_bool)
        check_config_fields(self, ("selection",), check_choice, choices=SELECTIONS)
        check_config_fields(self, ("device",), check_choice, choices=DEVICES)
        if not isinstance(self.click_signal, str) or not _CLICK_SIGNAL.match(self.click_signal):
            raise ArgumentError(
                "SupervisedConfig.click_signal must be 'auto', a column name or 'column>=value', "
                f"got {self.click_signal!r}"
            )
        try:  # the encoder's own checks, on a stand-in catalogue: a bad or unknown key fails here, not after logging
            config_class(self.encoder)(
                n_items=1, max_len=self.history_len, feedback_dim=1, **self.encoder_config
            )
        except (TypeError, ValueError) as error:
            raise ArgumentError(f"SupervisedConfig.encoder_config: {error}") from None

    def encoder_fields(self, n_items: int, feedback_dim: int) -> dict[str, Any]:
        """The encoder's config fields for a catalogue of `n_items` and `feedback_dim` feedback signals."""
        return {
            **self.encoder_config,
            "n_items": n_items,
            "max_len": self.history_len,
            "feedback_dim": feedback_dim,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (what `config.json` holds)."""
        from dataclasses import fields

        return {
            f.name: dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v for f in fields(self)
        }
