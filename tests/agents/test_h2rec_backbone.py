"""H2Rec as a PPO policy's backbone: its semantic IDs come from item text, so the policy loads an H2Rec
checkpoint (codes and text in its tensors) and fine-tunes it."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("stable_baselines3")

from recsim_env import encoders  # noqa: E402
from tests.agents.test_sb3_extractor import HISTORY, N_ITEMS, NextItemEnv, _ppo  # noqa: E402


def test_an_h2rec_checkpoint_backs_a_ppo_policy_and_trains(tmp_path):
    torch.manual_seed(0)
    enc = encoders.build(
        "h2rec",
        {"n_items": N_ITEMS, "max_len": HISTORY, "d_model": 8, "item_text_dim": 4, "codebook_size": 2},
    )
    enc.set_item_text(torch.randn(N_ITEMS, 4, generator=torch.Generator().manual_seed(1)))
    encoders.save(tmp_path / "ckpt", enc, item_ids=list(range(N_ITEMS)))
    env = NextItemEnv(user_features=False)
    model = _ppo(env, {"checkpoint": str(tmp_path / "ckpt"), "freeze": False})
    extractor = model.policy.features_extractor
    assert type(extractor.encoder) is type(enc)
    assert torch.equal(extractor.encoder.item_codes, enc.item_codes)
    before = {k: v.clone() for k, v in extractor.encoder.state_dict().items()}
    model.learn(64)
    changed = [k for k, v in extractor.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert "code_embedding.weight" in changed
    assert torch.equal(extractor.encoder.item_codes, enc.item_codes)  # the codes are fixed
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert env.action_space.contains(int(action))
