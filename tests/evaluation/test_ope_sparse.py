"""Sparse action distributions (top items plus the rest's mass) and context-free reward tables: the
estimators, the report and `seqrec ope-report` give the dense results without an `[n, N, K]` array."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from evaluation.cli_inputs import read_sparse_npz
from evaluation.ope import bandit_estimators
from evaluation.ope.checks import FeedbackError
from evaluation.ope.regression import DENSE_ONE_HOT_MAX_ACTIONS, RegressionModel
from evaluation.ope.sparse import RewardTable, SparseActionDist
from evaluation.report import build_report
from recsim_env.errors import DataError


def _sparse(n: int, n_actions: int, top: int, seed: int, n_positions: int = 1) -> SparseActionDist:
    rng = np.random.default_rng(seed)
    items = np.argsort(rng.random((n, n_actions)), axis=1)[:, :top]  # distinct per row
    probs = rng.dirichlet(np.ones(top), size=n) * rng.uniform(0.5, 1.0, size=(n, 1))
    return SparseActionDist.checked(items, probs, n_actions=n_actions, n_positions=n_positions)


def _bandit(n: int, n_actions: int, n_positions: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "reward": rng.binomial(1, 0.3, size=n).astype(float),
        "action": rng.integers(0, n_actions, size=n),
        "position": rng.integers(0, n_positions, size=n),
        "pscore": np.full(n, 1.0 / n_actions),
    }


def test_dense_form_and_lookups():
    dist = _sparse(7, 12, 3, seed=0, n_positions=2)
    dense = dist.dense()
    assert dense.shape == dist.shape == (7, 12, 2)
    np.testing.assert_allclose(dense.sum(axis=1), 1.0)
    action = np.arange(7) % 12
    np.testing.assert_allclose(dist.prob(action), dense[np.arange(7), action, 0])
    values = np.random.default_rng(1).normal(size=(7, 12))
    listed = values[np.arange(7)[:, None], dist.items]
    np.testing.assert_allclose(dist.expectation(listed, values.sum(axis=1)), (dense[:, :, 0] * values).sum(1))
    uniform = SparseActionDist.uniform(3, 5)
    np.testing.assert_allclose(uniform.dense(), 0.2)


@pytest.mark.parametrize("n_positions", [1, 2])
def test_estimators_match_the_dense_arrays(n_positions):
    n, n_actions = 300, 40
    dist = _sparse(n, n_actions, 5, seed=2, n_positions=n_positions)
    logged = _bandit(n, n_actions, n_positions, seed=3)
    rng = np.random.default_rng(4)
    table = RewardTable(rng.uniform(0, 1, size=(3, n_actions, n_positions)), rng.integers(0, 3, size=n))
    boot = dict(alpha=0.1, n_bootstrap_samples=50, random_state=0)
    for est in bandit_estimators(lambda_=30.0):
        dense = est.estimate(
            **logged, action_dist=dist.dense(), estimated_rewards_by_reg_model=table.dense(), **boot
        )
        for q in (table, table.dense()):  # a sparse policy with a table or with dense predictions
            sparse = est.estimate(**logged, action_dist=dist, estimated_rewards_by_reg_model=q, **boot)
            for field in ("value", "lower", "upper"):
                assert getattr(sparse, field) == pytest.approx(getattr(dense, field), rel=1e-10, abs=1e-12)


def test_report_matches_the_dense_report():
    n, n_actions = 400, 600  # most items never logged
    dist = _sparse(n, n_actions, 4, seed=5)
    logged = _bandit(n, n_actions, 1, seed=6)
    logged["action"][:200] = dist.items[:200, 0]  # some logged actions the policy lists
    table = RewardTable(np.random.default_rng(7).uniform(size=(1, n_actions, 1)), np.zeros(n, np.int64))
    common = dict(n_bootstrap_samples=50, random_state=0, min_ess=10.0)
    dense = build_report(
        bandit_estimators(), **logged, action_dist=dist.dense(), estimated_rewards_by_reg_model=table.dense(),
        **common,
    )  # fmt: skip
    sparse = build_report(
        bandit_estimators(), **logged, action_dist=dist, estimated_rewards_by_reg_model=table, **common
    )
    assert sparse.ess == pytest.approx(dense.ess, rel=1e-12)
    assert sparse.support_deficit == pytest.approx(dense.support_deficit, rel=1e-12)
    assert 0.0 < sparse.support_deficit < 1.0
    assert sparse.verdict == dense.verdict
    for a, b in zip(sparse.estimates, dense.estimates, strict=True):
        assert a.value == pytest.approx(b.value, rel=1e-10)
    with pytest.raises(ValueError, match="behaviour_action_dist: not supported"):
        build_report(
            bandit_estimators(), **logged, action_dist=dist, estimated_rewards_by_reg_model=table,
            behaviour_action_dist=dist.dense(), **common,
        )  # fmt: skip


def test_reward_table_is_fit_predict_exactly():
    logged = _bandit(500, 30, 2, seed=8)
    model = RegressionModel(n_actions=30, len_list=2, base_model=Ridge(alpha=1.0))
    args = dict(action=logged["action"], reward=logged["reward"], position=logged["position"], random_state=3)
    table = model.fit_predict_table(**args, n_folds=3)
    assert table.table.shape == (3, 30, 2)
    np.testing.assert_array_equal(table.dense(), model.fit_predict(**args, n_folds=3))


def test_large_catalogue_one_hot_is_sparse_and_agrees_with_dense():
    n_actions = DENSE_ONE_HOT_MAX_ACTIONS + 1000
    rng = np.random.default_rng(9)
    action = rng.integers(0, 50, size=2000)  # few items logged: their means are learned
    reward = rng.binomial(1, 0.1 + 0.015 * action).astype(float)
    sparse_model = RegressionModel(n_actions=n_actions, base_model=Ridge(alpha=1.0))
    assert sparse_model.action_context is None
    table = sparse_model.fit_predict_table(action=action, reward=reward, n_folds=1).table[0, :, 0]
    dense_model = RegressionModel(
        n_actions=60, base_model=Ridge(alpha=1.0), action_context=np.eye(60)
    )  # the same problem on a catalogue of 60: the one-hot ridge solution of the logged items
    dense = dense_model.fit_predict_table(action=action, reward=reward, n_folds=1).table[0, :, 0]
    np.testing.assert_allclose(table[:50], dense[:50], atol=1e-3)
    np.testing.assert_allclose(table[50:], table[-1], atol=1e-6)  # never-logged items: the intercept


def test_bad_sparse_inputs_name_the_array_and_row():
    with pytest.raises(FeedbackError, match=r"items\[1\] lists an item twice \(round 1"):
        SparseActionDist.checked([[0, 1], [2, 2]], [[0.5, 0.5], [0.5, 0.5]], n_actions=4)
    with pytest.raises(FeedbackError, match=r"items\[0, 1\] = 9 is outside the catalogue \[0, 4\)"):
        SparseActionDist.checked([[0, 9]], [[0.5, 0.5]], n_actions=4)
    with pytest.raises(FeedbackError, match=r"probs\[0, 0\] = -0.5"):
        SparseActionDist.checked([[0, 1]], [[-0.5, 0.5]], n_actions=4)
    with pytest.raises(FeedbackError, match="round 1 .* sums to 1.3"):
        SparseActionDist.checked([[0], [1]], [[0.5], [0.5]], [0.5, 0.8], n_actions=4)
    with pytest.raises(FeedbackError, match="every item is listed"):
        SparseActionDist.checked([[0, 1]], [[0.2, 0.2]], n_actions=2)


def test_npz_file_errors(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, items=np.array([[0, 1], [1, 2]]), probs=np.array([[0.5, 0.2], [0.9, 0.1]]))
    dist = read_sparse_npz(good, n_rounds=2, n_actions=5, n_positions=1)
    np.testing.assert_allclose(dist.rest, [0.3, 0.0])
    with pytest.raises(DataError, match="expected 3 rows"):
        read_sparse_npz(good, n_rounds=3, n_actions=5, n_positions=1)
    objects = tmp_path / "objects.npz"
    np.savez(objects, items=np.array([[0], [1]]), probs=np.array([[1.0], [None]], dtype=object))
    with pytest.raises(DataError, match="array 'probs' is not a plain numeric array"):
        read_sparse_npz(objects, n_rounds=2, n_actions=5, n_positions=1)
    extra = tmp_path / "extra.npz"
    np.savez(extra, items=np.zeros((2, 1), int), probs=np.ones((2, 1)), weights=np.ones(2))
    with pytest.raises(DataError, match="unknown"):
        read_sparse_npz(extra, n_rounds=2, n_actions=5, n_positions=1)
    bad_row = tmp_path / "bad_row.npz"
    np.savez(bad_row, items=np.array([[0, 1], [3, 3]]), probs=np.full((2, 2), 0.5))
    with pytest.raises(DataError, match=r"bad_row.npz .*items\[1\] lists an item twice"):
        read_sparse_npz(bad_row, n_rounds=2, n_actions=5, n_positions=1)
    with pytest.raises(DataError, match="not a readable .npz"):
        (tmp_path / "junk.npz").write_bytes(b"not a zip")
        read_sparse_npz(tmp_path / "junk.npz", n_rounds=2, n_actions=5, n_positions=1)


def _session_log(n: int, n_items: int, seed: int, sessions: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    item = rng.integers(0, n_items, size=n)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, size=n),
            "item_id": item,
            "timestamp": np.arange(n, dtype=float),
            "click": rng.binomial(1, 0.1 + 0.1 * (item % 5)).astype(float),
            "propensity": np.full(n, 1.0 / n_items),
        }
    )
    if sessions:
        frame["session_id"] = frame["user_id"] * 10 + (frame["timestamp"] // 200).astype(int)
    return frame


def test_ope_report_reads_a_sparse_npz_like_the_dense_npy(tmp_path):
    from evaluation.cli import build_ope_report
    from evaluation.cli_options import OPEReportOptions
    from recsim_env.data.loaders import ColumnMapping, load

    n_items = 12
    frame = _session_log(600, n_items, seed=10, sessions=False)
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    n_rows = len(load(path, mapping=ColumnMapping(propensity="propensity")).frame)
    dist = _sparse(n_rows, n_items, 3, seed=11)
    np.savez(tmp_path / "top3.npz", items=dist.items.astype(np.int32), probs=dist.probs, rest=dist.rest)
    np.save(tmp_path / "top3.npy", dist.dense()[:, :, 0])
    options = OPEReportOptions(
        logs=path,
        policy=[str(tmp_path / "top3.npy"), str(tmp_path / "top3.npz")],
        out=tmp_path / "out",
        n_bootstrap=50,
    )
    _, (dense, sparse) = build_ope_report(options)
    for a, b in zip(sparse.estimates, dense.estimates, strict=True):
        assert a.value == pytest.approx(b.value, rel=1e-9) and a.lower == pytest.approx(b.lower, rel=1e-9)
    assert sparse.support_deficit == pytest.approx(dense.support_deficit, rel=1e-9)

    # With sessions, the sparse candidate's sequential section (importance weights, FQE, the DR family,
    # risk) is the dense one's up to float32 rounding in FQE (a short fit: a long one amplifies rounding).
    frame = _session_log(600, n_items, seed=10, sessions=True)
    frame.to_csv(path, index=False)
    options = OPEReportOptions(
        logs=path,
        policy=[str(tmp_path / "top3.npy"), str(tmp_path / "top3.npz")],
        out=tmp_path / "out",
        n_bootstrap=50,
        fqe_steps=20,
        rank_by="seq-Switch-DR",
    )
    _, (dense, sparse) = build_ope_report(options)
    assert dense.sequential is not None and sparse.sequential is not None
    assert [e.name for e in sparse.sequential.estimates] == [e.name for e in dense.sequential.estimates]
    for a, b in zip(sparse.sequential.estimates, dense.sequential.estimates, strict=True):
        for field in ("value", "lower", "upper"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-5, abs=1e-6), (a.name, field)
    assert sparse.sequential.ess == pytest.approx(dense.sequential.ess, rel=1e-12)
    assert sparse.sequential.warnings == dense.sequential.warnings
