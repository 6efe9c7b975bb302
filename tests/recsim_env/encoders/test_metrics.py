"""Ranking metrics against rankings computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from recsim_env.encoders.metrics import (
    held_out_list_metrics,
    hit_rate,
    list_metrics,
    mrr,
    ndcg,
    r_precision,
    ranking_metrics,
    recommended_songs_clicks,
    target_ranks,
)
from recsim_env.encoders.trainer import EvalSet, evaluate_full_ranking, seen_mask


def test_target_ranks_by_hand():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.7],  # target 2 (0.5): beaten by items 0 and 3 -> rank 2
            [0.2, 0.8, 0.3, 0.1],  # target 1: best -> rank 0
            [0.4, 0.4, 0.9, 0.0],  # target 0 ties item 1: ties do not count -> rank 1 (item 2)
        ]
    )
    targets = torch.tensor([2, 1, 0])
    assert target_ranks(scores, targets).tolist() == [2, 0, 1]
    excluded = torch.tensor(
        [
            [True, False, False, False],  # item 0 seen -> only item 3 is above -> rank 1
            [False, True, False, False],  # the target itself is never excluded -> rank 0
            [False, False, True, False],  # item 2 seen -> rank 0
        ]
    )
    assert target_ranks(scores, targets, excluded=excluded).tolist() == [1, 0, 0]


def test_metric_values_by_hand():
    ranks = torch.tensor([0, 2, 9, 10, 25])
    assert hit_rate(ranks, 10).tolist() == [1, 1, 1, 0, 0]
    expected_ndcg = [1.0, 1 / math.log2(4), 1 / math.log2(11), 0.0, 0.0]
    torch.testing.assert_close(ndcg(ranks, 10), torch.tensor(expected_ndcg))
    torch.testing.assert_close(mrr(ranks, 10), torch.tensor([1.0, 1 / 3, 1 / 10, 0.0, 0.0]))
    m = ranking_metrics(ranks, ks=(10, 20))
    assert m["hr@10"] == pytest.approx(3 / 5)
    assert m["hr@20"] == pytest.approx(4 / 5)
    assert m["ndcg@10"] == pytest.approx(sum(expected_ndcg) / 5)
    assert m["ndcg@20"] == pytest.approx((sum(expected_ndcg) + 1 / math.log2(12)) / 5)
    assert m["mrr@20"] == pytest.approx((1 + 1 / 3 + 1 / 10 + 1 / 11) / 5)
    with pytest.raises(ValueError):
        ranking_metrics(torch.tensor([], dtype=torch.long))


def test_recsys_challenge_2018_measures_by_hand():
    ranks = torch.tensor([0, 1, 9, 10, 19, 20, 499, 500, 1600])  # 0-based: 1-based rank is r + 1
    # one relevant item: R-precision = 1 only at the top (HR@1)
    assert r_precision(ranks).tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]
    torch.testing.assert_close(r_precision(ranks), hit_rate(ranks, 1))
    # clicks = floor((rank - 1) / 10) inside the top 500, else 51
    assert recommended_songs_clicks(ranks).tolist() == [0, 0, 0, 1, 1, 2, 49, 51, 51]
    m = ranking_metrics(ranks)
    assert m["r_precision"] == pytest.approx(1 / 9)
    assert m["clicks"] == pytest.approx((0 + 0 + 0 + 1 + 1 + 2 + 49 + 51 + 51) / 9)


def test_list_metrics_with_several_relevant_items_by_hand():
    lists = [["a", "b", "c", "d"], ["x", "y", "z", "w"], list(range(600))]
    relevant = [{"b", "d", "q"}, {"w"}, {555}]
    # row 0: |G| = 3, top 3 = a, b, c holds b -> 1/3; first relevant (b) at rank 2 -> 0 clicks
    # row 1: |G| = 1, top 1 = x -> 0; w at rank 4 -> 0 clicks; row 2: 555 is beyond the 500 -> 51 clicks
    m = list_metrics(lists, relevant)
    assert m["r_precision"] == pytest.approx((1 / 3 + 0 + 0) / 3)
    assert m["clicks"] == pytest.approx((0 + 0 + 51) / 3)
    assert m["rows"] == 3
    # a short list that misses: its clicks are unknown, so the mean is not reported
    short = list_metrics([["a"], ["b"]], [{"a"}, {"c"}])
    assert short["r_precision"] == pytest.approx(0.5) and short["clicks"] is None
    assert list_metrics([["a"], ["b"]], [{"a"}, set()])["rows"] == 1  # no relevant item: skipped
    with pytest.raises(ValueError, match="relevant"):
        list_metrics([["a"]], [set()])


def test_held_out_list_metrics_reads_the_last_events():
    from recsim_env.data import LoggedInteractions

    frame = pd.DataFrame(
        {"user_id": ["u", "u", "u", "v", "v", "w"], "item_id": [1, 2, 3, 4, 5, 6], "timestamp": range(6)}
    )
    logs = LoggedInteractions.from_frame(frame)
    recs = pd.DataFrame({"user_id": ["u", "u", "v"], "rank": [2, 1, 1], "item_id": [3, 9, 5]})
    # holdout 1: u's held-out {3}, list [9, 3]: top 1 misses -> 0, first hit at rank 2 -> 0 clicks;
    # v's held-out {5}, list [5] -> 1, 0 clicks; w has no event before its held-out one: skipped
    m = held_out_list_metrics(recs, logs, 1)
    assert m == {"r_precision": pytest.approx(0.5), "clicks": pytest.approx(0.0), "rows": 2}
    # holdout 2: only u has an event left before them; held-out {2, 3}, top 2 = [9, 3] -> 1/2
    m = held_out_list_metrics(recs, logs, 2)
    assert m == {"r_precision": pytest.approx(0.5), "clicks": pytest.approx(0.0), "rows": 1}
    # a list of fewer than 500 items without the held-out item: clicks unknown
    m = held_out_list_metrics(recs.assign(item_id=[3, 9, 7]), logs, 1)
    assert m["r_precision"] == pytest.approx(0.0) and m["clicks"] is None
    with pytest.raises(ValueError, match="holdout_last"):
        held_out_list_metrics(recs, logs, 0)


def test_seen_mask_from_csr():
    mask = seen_mask(np.array([0, 2, 2, 3]), np.array([1, 3, 0]), 4, torch.device("cpu"))
    assert mask.tolist() == [[False, True, False, True], [False] * 4, [True, False, False, False]]


class FixedScores(torch.nn.Module):
    """Stand-in encoder whose scores are a fixed table row per user (picked by the history's last item)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table
        self.n_items = table.shape[1]
        self.config = type("C", (), {"feedback_dim": 0})()

    def user_state(self, item_ids, **_):
        return item_ids[:, -1:].float()  # a [B, 1] float state, as real encoders return [B, d]

    def score(self, state):
        return self.table[state[:, 0].long()]


def test_evaluate_full_ranking_both_protocols():
    # 2 users; user 0's history is [2, 0], target 3; user 1's history is [1], target 0.
    table = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.9, 0.8, 0.7, 0.6], [0.0] * 4]).float()
    table[0] = torch.tensor([0.9, 0.5, 0.8, 0.7])  # user 0 (last item 0): items 0 and 2 beat target 3
    eval_set = EvalSet(
        users=np.array([0, 1]),
        item_ids=np.array([[2, 0], [4, 1]]),
        timestamps=np.zeros((2, 2)),
        feedback=np.zeros((2, 2, 0), dtype=np.float32),
        targets=np.array([3, 0]),
        seen_offsets=np.array([0, 2, 3]),
        seen_items=np.array([2, 0, 1]),
    )
    result = evaluate_full_ranking(FixedScores(table), eval_set, ks=(1, 2))
    # included: ranks [2, 0]; excluded (items 0, 2 seen for user 0): ranks [0, 0]
    assert result["seen_included"]["hr@1"] == pytest.approx(0.5)
    assert result["seen_included"]["hr@2"] == pytest.approx(0.5)
    assert result["seen_excluded"]["hr@1"] == pytest.approx(1.0)
    assert result["seen_excluded"]["mrr@2"] == pytest.approx(1.0)
    # RecSys Challenge 2018 measures beside them: R-precision = HR@1, clicks = floor(rank / 10)
    assert result["seen_included"]["r_precision"] == pytest.approx(0.5)
    assert result["seen_included"]["clicks"] == pytest.approx(0.0)
