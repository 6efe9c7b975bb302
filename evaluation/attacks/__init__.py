"""Attacks on recommenders and defences against them.

`evaluation.attacks.poisoning` injects fake users into logged interactions (random, bandwagon and
sequential target-promotion attacks); `evaluation.attacks.defence` is LoRec's calibrator, which
reweights users in training by how likely they are to be fake; `evaluation.attacks.measure` trains
encoders on clean, poisoned and defended logs and measures the target items' exposure. Importing this
package stays light (numpy and pandas only).
"""

from evaluation.attacks.poisoning import (
    ATTACK_KINDS,
    PoisonConfig,
    PoisonedLogs,
    fake_user_tokens,
    poison,
    target_indices,
)

__all__ = ["ATTACK_KINDS", "PoisonConfig", "PoisonedLogs", "fake_user_tokens", "poison", "target_indices"]
