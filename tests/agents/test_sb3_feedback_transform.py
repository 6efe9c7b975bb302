"""`feedback_transform="log1p"`: the encoder reads `sign(x) log(1 + |x|)` of the observed feedback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

pytest.importorskip("stable_baselines3")

from agents.sb3 import SequenceFeaturesExtractor  # noqa: E402
from agents.training import TrainConfig  # noqa: E402

N_ITEMS, HISTORY, SIGNALS = 6, 5, 2
SPACE = spaces.Dict(
    {
        "item_ids": spaces.Box(0, N_ITEMS, shape=(HISTORY,), dtype=np.int64),
        "feedback": spaces.Box(-np.inf, np.inf, shape=(HISTORY, SIGNALS), dtype=np.float32),
        "session_step": spaces.Box(0, 10, shape=(1,), dtype=np.int64),
    }
)


def _extractor(transform: str) -> SequenceFeaturesExtractor:
    torch.manual_seed(0)
    extractor = SequenceFeaturesExtractor(
        SPACE, encoder="sasrec", encoder_config={"d_model": 8, "n_layers": 1}, feedback_transform=transform
    )
    return extractor.eval()


def test_log1p_equals_the_untransformed_extractor_on_transformed_feedback():
    observation = {
        "item_ids": torch.tensor([[6.0, 1.0, 2.0, 3.0, 4.0]]),
        "feedback": torch.tensor([[[0.0, 0.0], [1.0, 45.0], [1.0, -3.0], [0.0, 0.0], [1.0, 120.0]]]),
        "session_step": torch.tensor([[2.0]]),
    }
    transformed = dict(
        observation, feedback=torch.sign(observation["feedback"]) * torch.log1p(observation["feedback"].abs())
    )
    with torch.no_grad():
        expected = _extractor("none")(transformed)
        observed = _extractor("log1p")(observation)
        untransformed = _extractor("none")(observation)
    torch.testing.assert_close(observed, expected)
    assert not torch.allclose(observed, untransformed)


def test_unknown_transform_is_refused():
    with pytest.raises(ValueError, match="feedback_transform"):
        _extractor("sqrt")
    with pytest.raises(ValueError, match="feedback_transform"):
        TrainConfig(feedback_transform="sqrt")
