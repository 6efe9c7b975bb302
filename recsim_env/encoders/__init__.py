"""Sequential encoders (SASRec, BERT4Rec, HSTU, GRU4Rec) behind one `SequenceEncoder` interface.

    >>> from recsim_env import encoders
    >>> enc = encoders.build("sasrec", {"n_items": 1682, "max_len": 50})
    >>> state = enc.user_state(item_ids)          # [B, D] from left-padded [B, L] item ids
    >>> logits = enc.score(state)                  # [B, N]

Names are resolved lazily (PEP 562), so importing `recsim_env.encoders.cli` for `seqrec --help` does not
import torch; touching any model, config or function below does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsim_env.lazy import lazy_exports

_EXPORTS = {
    "EncoderConfig": "base",
    "SequenceEncoder": "base",
    "TrainingBatch": "base",
    "SASRec": "sasrec",
    "SASRecConfig": "sasrec",
    "BERT4Rec": "bert4rec",
    "BERT4RecConfig": "bert4rec",
    "HSTU": "hstu",
    "HSTUConfig": "hstu",
    "GRU4Rec": "gru4rec",
    "GRU4RecConfig": "gru4rec",
    "ENCODERS": "registry",
    "build": "registry",
    "config_class": "registry",
    "encoder_class": "registry",
    "register_encoder": "registry",
    "Checkpoint": "checkpoint",
    "load": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save": "checkpoint",
    "TrainerConfig": "trainer",
    "TrainResult": "trainer",
    "evaluate_full_ranking": "trainer",
    "train": "trainer",
}

__all__ = [
    "BERT4Rec",
    "BERT4RecConfig",
    "Checkpoint",
    "ENCODERS",
    "EncoderConfig",
    "GRU4Rec",
    "GRU4RecConfig",
    "HSTU",
    "HSTUConfig",
    "SASRec",
    "SASRecConfig",
    "SequenceEncoder",
    "TrainResult",
    "TrainerConfig",
    "TrainingBatch",
    "build",
    "config_class",
    "encoder_class",
    "evaluate_full_ranking",
    "load",
    "load_checkpoint",
    "register_encoder",
    "save",
    "train",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from recsim_env.encoders.base import EncoderConfig, SequenceEncoder, TrainingBatch
    from recsim_env.encoders.bert4rec import BERT4Rec, BERT4RecConfig
    from recsim_env.encoders.checkpoint import Checkpoint, load, load_checkpoint, save
    from recsim_env.encoders.gru4rec import GRU4Rec, GRU4RecConfig
    from recsim_env.encoders.hstu import HSTU, HSTUConfig
    from recsim_env.encoders.registry import ENCODERS, build, config_class, encoder_class, register_encoder
    from recsim_env.encoders.sasrec import SASRec, SASRecConfig
    from recsim_env.encoders.trainer import TrainerConfig, TrainResult, evaluate_full_ranking, train
