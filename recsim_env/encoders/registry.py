"""Encoder classes by name, and `build` from a name and a config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsim_env.encoders.base import EncoderConfig, SequenceEncoder
from recsim_env.encoders.bert4rec import BERT4Rec
from recsim_env.encoders.gru4rec import GRU4Rec
from recsim_env.encoders.h2rec import H2Rec
from recsim_env.encoders.hstu import HSTU
from recsim_env.encoders.icsrec import ICSRec
from recsim_env.encoders.mqsa import MQSA
from recsim_env.encoders.rearec import ReaRec
from recsim_env.encoders.sasrec import SASRec
from recsim_env.encoders.sigma import SIGMA

ENCODERS: dict[str, type[SequenceEncoder]] = {
    cls.name: cls for cls in (SASRec, BERT4Rec, HSTU, GRU4Rec, ReaRec, MQSA, ICSRec, SIGMA, H2Rec)
}
"""Encoder classes by name: what `seqrec train-encoder --model`, `seqrec train --encoder`, simulators and
policies accept. Adding an encoder is its module plus `register_encoder(MyEncoder)`."""


def register_encoder(cls: type[SequenceEncoder]) -> type[SequenceEncoder]:
    """Add an encoder class (it sets `name` and `config_class`); usable as a class decorator."""
    if not isinstance(getattr(cls, "name", None), str) or not cls.name.isidentifier():
        raise ValueError(f"{cls.__name__}.name must be an identifier, got {getattr(cls, 'name', None)!r}")
    ENCODERS[cls.name.lower()] = cls
    return cls


def encoder_names() -> tuple[str, ...]:
    return tuple(sorted(ENCODERS))


def encoder_class(name: str) -> type[SequenceEncoder]:
    """The encoder class registered as `name` (case-insensitive); a ValueError lists the known names."""
    try:
        return ENCODERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}") from None


def config_class(name: str) -> type[EncoderConfig]:
    """The config dataclass of encoder `name`."""
    return encoder_class(name).config_class


def build(name: str, config: EncoderConfig | Mapping[str, Any]) -> SequenceEncoder:
    """Build encoder `name` from its config (or a dict of the config's fields; unknown keys are an error)."""
    cls = encoder_class(name)
    if isinstance(config, Mapping):
        config = cls.config_class.from_dict(dict(config))
    return cls(config)
