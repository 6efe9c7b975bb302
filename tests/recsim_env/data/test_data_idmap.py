import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsim_env.data import DataError, IdMap

tokens_st = st.one_of(
    st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=50),
    st.lists(st.text(min_size=0, max_size=8), min_size=1, max_size=50),
    st.lists(st.one_of(st.integers(-1000, 1000), st.text(max_size=4)), min_size=1, max_size=50),
)


@given(tokens_st, st.booleans())
def test_idmap_round_trips_random_tokens(tokens, sort):
    ids = IdMap.from_tokens(tokens, sort=sort)
    assert len(ids) == len(set(tokens))
    idx = ids.to_index(tokens)
    assert idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < len(ids)
    assert list(ids.to_token(idx)) == list(tokens)
    np.testing.assert_array_equal(ids.to_index(ids.tokens), np.arange(len(ids)))


def test_int_tokens_are_int64_and_sorted():
    ids = IdMap.from_tokens([30, 10, 20, 10])
    assert ids.tokens.dtype == np.int64
    assert ids.tokens.tolist() == [10, 20, 30]


def test_string_tokens_sorted_and_mixed_tokens_keep_first_appearance():
    assert IdMap.from_tokens(["b", "a", "b"]).tokens.tolist() == ["a", "b"]
    assert IdMap.from_tokens(["b", "a"], sort=False).tokens.tolist() == ["b", "a"]
    assert IdMap.from_tokens(["x", 3, "a", 3]).tokens.tolist() == ["x", 3, "a"]


def test_unknown_token_is_named():
    ids = IdMap.from_tokens([1, 2, 3])
    with pytest.raises(DataError, match="'zzz'"):
        ids.to_index(["zzz"])
    with pytest.raises(DataError, match="99"):
        ids.to_index([1, 99])
    with pytest.raises(DataError, match="out of range"):
        ids.to_token([3])


def test_duplicate_tokens_rejected_and_equality():
    with pytest.raises(DataError, match="more than once"):
        IdMap(np.array([1, 1]))
    assert IdMap.from_tokens([2, 1]) == IdMap(np.array([1, 2]))
    assert IdMap.from_tokens(["1"]) != IdMap.from_tokens([1])
