"""World logs as Minari datasets: what `minari.load_dataset` gives back, and the round trip to rows."""

import warnings

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from tests.optional import import_extra  # noqa: E402

minari = import_extra("minari", extra="minari", reason="the Minari datasets need the 'minari' extra")

from recsim_env.data import LoggedInteractions  # noqa: E402
from recsim_env.data.minari import EpisodeRecorder  # noqa: E402
from recsim_env.errors import ArgumentError, DataError  # noqa: E402
from recsim_env.world import SIGNALS, WorldConfig  # noqa: E402
from recsim_env.world.cli import app as world_app  # noqa: E402
from recsim_env.world.logging import log_world  # noqa: E402
from recsim_env.world.minari_suite import SUITE, build_suite, write_world_minari  # noqa: E402

pytestmark = pytest.mark.minari
runner = CliRunner()
SMALL = WorldConfig(n_items=40, n_categories=4, n_users=200)


@pytest.fixture(autouse=True)
def _datasets_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    warnings.filterwarnings("ignore", module="minari")


def _log(dataset_id, *, steps=400, slate_size=1, policy="epsilon-greedy", num_envs=16):
    recorder = EpisodeRecorder(SIGNALS, slate_size)
    data = log_world(
        policy, steps=steps, seed=3, world_config=SMALL, slate_size=slate_size, num_envs=num_envs,
        progress=False, on_step=recorder,
    )  # fmt: skip
    dataset = write_world_minari(
        dataset_id, recorder, SMALL, slate_size, 3, settings={"policy": policy, "seed": 3}
    )
    return data, dataset


def test_cli_writes_a_dataset_with_the_logs_steps_and_propensities(tmp_path):
    root = typer.Typer()
    root.add_typer(world_app, name="world")
    out = tmp_path / "logs.parquet"
    args = ["world", "log", "--policy", "epsilon-greedy", "--steps", "3000", "--seed", "0", "--out", str(out)]
    result = runner.invoke(root, [*args, "--minari-id", "seqrec/world-egreedy-v0"])
    assert result.exit_code == 0, result.output
    dataset = minari.load_dataset("seqrec/world-egreedy-v0")
    assert dataset.total_steps == 3000
    env = dataset.recover_environment()
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    log = LoggedInteractions.read_parquet(out)
    propensity = np.concatenate([episode.infos["propensity"][1:] for episode in dataset.iterate_episodes()])
    assert np.sort(propensity).tolist() == np.sort(log.frame["propensity"].to_numpy()).tolist()
    again = runner.invoke(root, [*args, "--minari-id", "seqrec/world-egreedy-v0"])
    assert again.exit_code != 0 and "already exists" in again.output
    malformed = runner.invoke(root, [*args, "--minari-id", "not an id"])
    assert malformed.exit_code != 0 and "NAMESPACE/NAME-vN" in malformed.output


@pytest.mark.parametrize("slate_size", [1, 3])
def test_from_minari_gives_back_the_parquet_log(slate_size):
    data, dataset = _log("seqrec/round-trip-v0", slate_size=slate_size)
    back = LoggedInteractions.from_minari(dataset)
    pd.testing.assert_frame_equal(back.frame[data.frame.columns], data.frame)
    assert back.feedback_columns == data.feedback_columns
    assert back.n_items == data.n_items
    assert dataset.total_steps == 400


def test_episodes_replay_in_the_recovered_environment():
    """The first episode of sub-env i is a `SeqRec-v0` episode seeded i: replaying its actions in the
    recovered env gives back its observations and rewards."""
    _, dataset = _log("seqrec/replay-v0", steps=600, slate_size=2, num_envs=8)
    env = dataset.recover_environment()
    for episode in dataset.iterate_episodes(range(8)):  # logged users 0..7: sub-envs 0..7, seeded 3 + i
        obs, _ = env.reset(seed=3 + int(episode.id))
        for key in obs:
            np.testing.assert_array_equal(obs[key], episode.observations[key][0])
        for t, action in enumerate(episode.actions):
            obs, reward, terminated, truncated, _ = env.step(np.asarray(action))
            for key in obs:
                np.testing.assert_array_equal(obs[key], episode.observations[key][t + 1])
            assert reward == pytest.approx(episode.rewards[t])
            assert terminated == episode.terminations[t]
            assert truncated == episode.truncations[t] or t == len(episode.actions) - 1


def test_infos_carry_propensities_and_every_signal():
    data, dataset = _log("seqrec/infos-v0", slate_size=2)
    episode = next(dataset.iterate_episodes())
    t = len(episode.actions)
    assert episode.infos["propensity"].shape == (t + 1,)
    assert np.isnan(episode.infos["propensity"][0])  # the reset: no action yet
    np.testing.assert_allclose(
        episode.infos["propensity"][1:], np.prod(episode.infos["position_propensity"][1:], axis=1)
    )
    assert set(episode.infos["feedback"]) == set(SIGNALS)
    assert episode.infos["feedback"]["click"].shape == (t + 1, 2)
    assert episode.terminations[-1] or episode.truncations[-1]


def test_refusals():
    _log("seqrec/taken-v0", steps=50)
    with pytest.raises(ArgumentError, match="already exists"):
        _log("seqrec/taken-v0", steps=50)
    recorder = EpisodeRecorder(SIGNALS, 1)
    with pytest.raises(ArgumentError, match="no episode"):
        write_world_minari("seqrec/empty-v0", recorder, SMALL, 1, 3, settings={"policy": "uniform"})
    with pytest.raises(ArgumentError, match="both reference scores"):
        write_world_minari(
            "seqrec/x-v0", recorder, SMALL, 1, 3, settings={"policy": "uniform"}, ref_min_score=0.0
        )
    with pytest.raises(ArgumentError, match="NAMESPACE/NAME-vN"):
        write_world_minari("seqrec/no-version", recorder, SMALL, 1, 3, settings={"policy": "uniform"})
    with pytest.raises(DataError, match="not found"):
        LoggedInteractions.from_minari("seqrec/missing-v0")


@pytest.mark.slow  # about 25 s: the filter reference policies' rollouts compile their kernels
def test_the_suite_has_every_dataset_with_reference_scores():
    scores = build_suite(
        steps=200, seed=0, episodes=4, world_config=SMALL, progress=False, echo=lambda _: None
    )
    assert scores["ref_min_score"] == scores["returns"]["uniform"] < scores["ref_max_score"]
    for name in SUITE:
        dataset = minari.load_dataset(f"seqrec/world-{name}-v0")
        assert dataset.total_steps == 200
        normalized = minari.get_normalized_score(dataset, np.array([scores["ref_max_score"]]))
        np.testing.assert_allclose(normalized, [1.0])
    with pytest.raises(ArgumentError, match="already exists"):
        build_suite(steps=200, seed=0, episodes=2, world_config=SMALL, progress=False, echo=lambda _: None)
