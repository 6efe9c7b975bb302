"""MIPS's embedded form (an `ActionEmbedding` of the catalogue): dense against sparse, against the marginal
form, its variance advantage, bad input, a 100,000-item sparse case in bounded memory, and
`seqrec ope-report --action-embedding`."""

from __future__ import annotations

import pickle
import re
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from evaluation.ope import (
    FeedbackError,
    InverseProbabilityWeighting,
    MarginalizedInverseProbabilityWeighting,
    SelfNormalizedMarginalizedInverseProbabilityWeighting,
    embedding_marginal,
)
from evaluation.ope.mips import ActionEmbedding
from evaluation.ope.sparse import SparseActionDist
from recsim_env.errors import ArgumentError, DataError


def _sparse(n: int, n_items: int, n_listed: int, seed: int) -> SparseActionDist:
    rng = np.random.default_rng(seed)
    items = np.stack([rng.choice(n_items, size=n_listed, replace=False) for _ in range(n)])
    mass = rng.dirichlet(np.ones(n_listed + 1), size=n)
    return SparseActionDist.checked(items, mass[:, :n_listed], mass[:, n_listed], n_actions=n_items)


def _feedback(n: int, n_items: int, seed: int) -> dict[str, np.ndarray]:
    """A uniform logger's rows (one position): actions, rewards, propensities."""
    rng = np.random.default_rng(seed)
    return {
        "reward": rng.binomial(1, 0.3, size=n).astype(float),
        "action": rng.integers(0, n_items, size=n),
        "pscore": np.full(n, 1.0 / n_items),
    }


def test_sparse_rows_give_the_dense_numbers():
    n, n_items = 300, 40
    embedding = ActionEmbedding.checked(
        np.random.default_rng(1).integers(0, 6, size=n_items), n_actions=n_items
    )
    sparse = _sparse(n, n_items, 5, seed=2)
    dense = sparse.dense()
    data = _feedback(n, n_items, seed=3)
    position = np.zeros(n, dtype=np.int64)
    # p(e | x_i, pi): the sparse rule (listed items + the rest spread over the unlisted) is the dense sum.
    np.testing.assert_allclose(embedding.embedding_dist(sparse), embedding.embedding_dist(dense), atol=1e-15)
    np.testing.assert_allclose(
        embedding.embedding_dist(dense)[:, :, 0], embedding_marginal(dense[:, :, 0], embedding.of_action, 6)
    )
    np.testing.assert_allclose(
        embedding.policy_marginal(sparse, data["action"], position),
        embedding.policy_marginal(dense, data["action"], position),
        atol=1e-15,
    )
    for cls in (
        MarginalizedInverseProbabilityWeighting,
        SelfNormalizedMarginalizedInverseProbabilityWeighting,
    ):
        estimator = cls(action_embedding=embedding)
        a = estimator.estimate(action_dist=sparse, n_bootstrap_samples=200, **data)
        b = estimator.estimate(action_dist=dense, n_bootstrap_samples=200, **data)
        assert a.value == pytest.approx(b.value, rel=1e-12)
        assert (a.lower, a.upper) == pytest.approx((b.lower, b.upper), rel=1e-12)


def test_embedded_form_is_the_marginal_form_with_the_logged_frequency():
    n, n_items, n_values = 400, 30, 4
    rng = np.random.default_rng(4)
    of_action = rng.integers(0, n_values, size=n_items)
    embedding = ActionEmbedding.checked(of_action, n_actions=n_items)
    dist = rng.dirichlet(np.ones(n_items), size=n)[:, :, None]
    data = _feedback(n, n_items, seed=5)
    embed = of_action[data["action"]]
    frequency = np.bincount(embed, minlength=n_values)[embed] / n
    marginal = MarginalizedInverseProbabilityWeighting().estimate_policy_value(
        reward=data["reward"],
        action_embed=embed,
        embed_dist=embedding_marginal(dist[:, :, 0], of_action, n_values)[:, :, None],
        embed_pscore=frequency,
    )
    embedded = MarginalizedInverseProbabilityWeighting(action_embedding=embedding)
    assert embedded.estimate_policy_value(action_dist=dist, **data) == pytest.approx(marginal, rel=1e-12)


def test_slates_use_each_positions_frequency():
    n, n_items = 200, 10
    rng = np.random.default_rng(6)
    of_action = np.arange(n_items) % 3
    embedding = ActionEmbedding.checked(of_action, n_actions=n_items)
    position = rng.integers(0, 2, size=n)
    action = rng.integers(0, n_items, size=n)
    logged = embedding.logged_marginal(action, position, 2)
    for i in (0, 17, 123):
        same = (position == position[i]) & (of_action[action] == of_action[action[i]])
        assert logged[i] == pytest.approx(same.sum() / (position == position[i]).sum())


def test_unbiased_without_direct_effect_and_far_less_variable_than_ips():
    """A context-free logger and a target that differs from it within every embedding value; the reward
    depends on the item through its embedding only, so MIPS is (nearly) unbiased and its spread is far
    below IPS's (the paper's regime)."""
    n_items, n_values, n, n_logs = 1000, 10, 2000, 60
    rng = np.random.default_rng(7)
    of_action = np.arange(n_items) % n_values
    click = 0.1 + 0.08 * np.arange(n_values)  # mean reward of each embedding value
    logger = np.full(n_items, 1.0 / n_items)
    target = np.where(np.arange(n_items) < 50, 1.0, 0.01) * (1.0 + of_action)  # 50 favourite items
    target /= target.sum()
    truth = float(target @ click[of_action])
    embedding = ActionEmbedding.checked(of_action, n_actions=n_items)
    mips, ips = [], []
    for _ in range(n_logs):
        action = rng.choice(n_items, size=n, p=logger)
        data = {
            "reward": rng.binomial(1, click[of_action[action]]).astype(float),
            "action": action,
            "pscore": logger[action],
            "action_dist": np.broadcast_to(target[None, :, None], (n, n_items, 1)),
        }
        mips.append(
            MarginalizedInverseProbabilityWeighting(action_embedding=embedding).estimate_policy_value(**data)
        )
        ips.append(InverseProbabilityWeighting().estimate_policy_value(**data))
    mips, ips = np.array(mips), np.array(ips)
    assert abs(mips.mean() - truth) < 3 * mips.std() / np.sqrt(n_logs) + 0.002
    assert abs(ips.mean() - truth) < 4 * ips.std() / np.sqrt(n_logs)
    assert mips.std() < 0.5 * ips.std()
    assert np.mean((mips - truth) ** 2) < 0.3 * np.mean((ips - truth) ** 2)


def test_a_100k_item_sparse_case_stays_small_in_memory():
    n, n_items, n_listed = 5000, 100_000, 20
    rng = np.random.default_rng(8)
    embedding = ActionEmbedding.checked(rng.integers(0, 1000, size=n_items), n_actions=n_items)
    sparse = _sparse(n, n_items, n_listed, seed=9)
    data = _feedback(n, n_items, seed=10)
    estimator = MarginalizedInverseProbabilityWeighting(action_embedding=embedding)
    tracemalloc.start()
    try:
        estimate = estimator.estimate(action_dist=sparse, n_bootstrap_samples=50, **data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # An [n, N] float64 array would be 4 GB and [n, E] 40 MB; the embedded form needs only [n, T] and [N].
    assert peak < 16 * 2**20, peak
    assert np.isfinite(estimate.value) and estimate.lower <= estimate.value <= estimate.upper
    # A few rows against the dense sum.
    rows = np.arange(3)
    dense = sparse.take(rows).dense()
    position = np.zeros(3, dtype=np.int64)
    np.testing.assert_allclose(
        embedding.policy_marginal(sparse.take(rows), data["action"][rows], position),
        embedding.policy_marginal(dense, data["action"][rows], position),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([0, 1, -1, 2]), r"action_embedding\[2\]"),
        (np.array([0.0, 1.5, 1.0, 2.0]), "integer"),
        (np.array([0, 1, 2]), "4 values, got shape"),
        (np.zeros((4, 2), dtype=int), "4 values, got shape"),
    ],
)
def test_bad_embeddings_are_refused(values, message):
    with pytest.raises(FeedbackError, match=message):
        ActionEmbedding.checked(values, n_actions=4)


def test_estimator_refuses_a_wrong_embedding():
    with pytest.raises(FeedbackError, match="action_embedding: expected an ActionEmbedding"):
        MarginalizedInverseProbabilityWeighting(action_embedding=np.zeros(4, dtype=int))
    estimator = MarginalizedInverseProbabilityWeighting(
        action_embedding=ActionEmbedding.checked(np.zeros(5, dtype=int), n_actions=5)
    )
    data = _feedback(20, 4, seed=11)
    with pytest.raises(FeedbackError, match="action_embedding has 5 actions but action_dist has 4"):
        estimator.estimate_policy_value(action_dist=np.full((20, 4, 1), 0.25), **data)
    with pytest.raises(FeedbackError, match="action_dist"):
        estimator.estimate_policy_value(**data)
    with pytest.raises(ArgumentError, match="embed_pscore: unknown argument"):
        estimator.estimate_policy_value(
            action_dist=np.full((20, 5, 1), 0.2), embed_pscore=np.ones(20), **data
        )


# ---------------------------------------------------------------------------------------- seqrec ope-report
def _log(n: int, n_items: int, seed: int) -> pd.DataFrame:
    """A uniform logger; item i is clicked with probability 0.1 + 0.1 (i % 5): a function of i % 5."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, n_items, size=n)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, size=n),
            "item_id": item,
            "timestamp": np.arange(n, dtype=float),
            "click": rng.binomial(1, 0.1 + 0.1 * (item % 5)).astype(float),
            "propensity": np.full(n, 1.0 / n_items),
        }
    )


def test_ope_report_adds_mips_for_dense_and_sparse_candidates_alike(tmp_path, run_ope_report):
    from evaluation.cli import MIPS_LOGGER_MARGINAL, build_ope_report
    from evaluation.cli_options import OPEReportOptions
    from recsim_env.data.loaders import ColumnMapping, load

    n_items = 12
    path = tmp_path / "log.csv"
    _log(600, n_items, seed=12).to_csv(path, index=False)
    n_rows = len(load(path, mapping=ColumnMapping(propensity="propensity")).frame)
    dist = _sparse(n_rows, n_items, 3, seed=13)
    np.savez(tmp_path / "top3.npz", items=dist.items, probs=dist.probs, rest=dist.rest)
    np.save(tmp_path / "top3.npy", dist.dense()[:, :, 0])
    np.save(tmp_path / "embedding.npy", np.arange(n_items) % 5)
    pd.DataFrame({"category": np.arange(n_items) % 5}).to_csv(tmp_path / "embedding.csv", index=False)
    reports = {}
    for suffix in ("npy", "csv"):
        options = OPEReportOptions(
            logs=path,
            policy=[str(tmp_path / "top3.npy"), str(tmp_path / "top3.npz")],
            out=tmp_path / "out",
            n_bootstrap=50,
            action_embedding=tmp_path / f"embedding.{suffix}",
        )
        _, reports[suffix] = build_ope_report(options)
    dense, sparse = reports["npy"]
    assert [e.name for e in dense.estimates][-2:] == ["MIPS", "SNMIPS"]
    for a, b, c in zip(sparse.estimates, dense.estimates, reports["csv"][1].estimates, strict=True):
        assert a.value == pytest.approx(b.value, rel=1e-9) and a.lower == pytest.approx(b.lower, rel=1e-9)
        assert a.value == c.value
    assert MIPS_LOGGER_MARGINAL.format(name="embedding.npy", values=5) in dense.all_warnings

    result = run_ope_report(
        "--logs", str(path), "--policy", str(tmp_path / "top3.npz"), "--out", str(tmp_path / "cli"),
        "--n-bootstrap", "50", "--action-embedding", str(tmp_path / "embedding.npy"), "--rank-by", "MIPS",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = (tmp_path / "cli" / "report.html").read_text(encoding="utf-8")
    assert "<td>MIPS</td>" in html and "<td>SNMIPS</td>" in html


def test_ope_report_refuses_bad_embedding_files(tmp_path, run_ope_report):
    n_items = 12
    path = tmp_path / "log.csv"
    _log(300, n_items, seed=14).to_csv(path, index=False)
    np.save(tmp_path / "short.npy", np.arange(n_items - 1) % 5)
    np.save(tmp_path / "negative.npy", np.array([0, 1, 2, -3] + [0] * (n_items - 4)))
    np.save(tmp_path / "floats.npy", np.full(n_items, 0.5))
    np.save(tmp_path / "objects.npy", np.array([0] * n_items, dtype=object), allow_pickle=True)
    pd.DataFrame({"a": np.zeros(n_items, int), "b": np.zeros(n_items, int)}).to_csv(
        tmp_path / "two.csv", index=False
    )
    pd.DataFrame({"c": ["x"] * n_items}).to_parquet(tmp_path / "text.parquet")
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps(np.zeros(n_items, dtype=int)))
    (tmp_path / "emb.json").write_text("[0]")
    cases = {
        "short.npy": "11 embedding values, but the log's catalogue has 12 items",
        "negative.npy": r"negative.npy \(item index\)\[3\]",
        "floats.npy": "integer",
        "objects.npy": "only unpickling could read",
        "pickle.npy": "not a readable .npy array",
        "two.csv": "expected one column",
        "text.parquet": "expected integers",
        "emb.json": "--action-embedding .*emb.json: expected a .npy, .parquet, .csv file",
        "missing.npy": "--action-embedding .*missing.npy: no such file",
    }
    for name, message in cases.items():
        result = run_ope_report(
            "--logs", str(path), "--policy", "uniform", "--out", str(tmp_path / "out"), "--n-bootstrap", "20",
            "--action-embedding", str(tmp_path / name),
        )  # fmt: skip
        assert result.exit_code != 0, name
        text = " ".join(result.output.split())
        assert name in text, (name, text)
        assert re.search(message, text), (name, text)
    result = run_ope_report(
        "--logs", str(path), "--policy", "uniform", "--out", str(tmp_path / "out"), "--rank-by", "SNMIPS"
    )
    assert result.exit_code != 0 and "need --action-embedding" in result.output


def test_read_action_embedding_raises_a_data_error(tmp_path):
    from evaluation.cli_inputs import read_action_embedding

    np.save(tmp_path / "e.npy", np.array([0, 2, 1]))
    assert read_action_embedding(tmp_path / "e.npy", n_actions=3).n_values == 3
    with pytest.raises(DataError, match="e.npy: 3 embedding values"):
        read_action_embedding(tmp_path / "e.npy", n_actions=4)
