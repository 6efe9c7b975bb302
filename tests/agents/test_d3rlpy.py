"""d3rlpy on a Minari world dataset: the MDPDataset, a few training steps, save / load, `seqrec evaluate`."""

import json
import warnings

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tests.optional import import_extra  # noqa: E402

import_extra("minari", extra="minari", reason="the d3rlpy agent reads Minari datasets (the 'minari' extra)")
import_extra(
    "d3rlpy",
    extra="d3rlpy",
    reason="d3rlpy is not installed: pip install -e '.[d3rlpy]' && pip install --no-deps 'd3rlpy==2.8.1'",
)

from agents.cli import evaluate_command, train_command  # noqa: E402
from agents.d3rlpy import D3rlpyConfig, D3rlpyPolicy, encode_observations, to_mdp_dataset, train  # noqa: E402
from agents.policy import load_policy  # noqa: E402
from recsim_env.data.minari import EpisodeRecorder  # noqa: E402
from recsim_env.world import SIGNALS, WorldConfig  # noqa: E402
from recsim_env.world.logging import log_world  # noqa: E402
from recsim_env.world.minari_suite import world_env_kwargs, write_world_minari  # noqa: E402

pytestmark = [pytest.mark.d3rlpy, pytest.mark.minari]
SMALL = WorldConfig(n_items=30, n_categories=3, n_users=100)
DATASET = "seqrec/tiny-egreedy-v0"
app = typer.Typer()
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _world_dataset(tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    recorder = EpisodeRecorder(SIGNALS, 1)
    log_world(
        "epsilon-greedy", steps=300, seed=0, world_config=SMALL, num_envs=8, progress=False, on_step=recorder
    )
    write_world_minari(DATASET, recorder, SMALL, 1, 3, settings={"policy": "epsilon-greedy"})


def test_mdp_dataset_holds_every_episode_and_the_encoded_observations():
    import minari

    mdp, facts = to_mdp_dataset(DATASET)
    dataset = minari.load_dataset(DATASET)
    assert facts["n_items"] == 30 and mdp.size() == dataset.total_episodes
    first = next(dataset.iterate_episodes())
    before = {key: value[:-1] for key, value in first.observations.items()}
    np.testing.assert_array_equal(
        mdp.episodes[0].observations, encode_observations(before, 30, SIGNALS.index("click"))
    )
    np.testing.assert_array_equal(mdp.episodes[0].actions[:, 0], first.actions)


@pytest.mark.parametrize("algo", ["discrete_cql", "discrete_bc"])
def test_a_trained_algorithm_acts_and_loads_back_the_same(algo, tmp_path):
    config = D3rlpyConfig(dataset=DATASET, algo=algo, steps=5, batch_size=16, hidden_units=(16,))
    policy, info = train(config, progress=False)
    assert info["steps"] == 5 and np.isfinite(list(info["final_metrics"].values())).all()
    import gymnasium as gym

    env = gym.make("SeqRec-v0", **world_env_kwargs(SMALL, 1, 3))
    obs, _ = env.reset(seed=1)
    item = policy.act(obs)
    assert isinstance(item, int) and 0 <= item < 30
    assert policy.action_distribution(obs)[item] == 1.0
    policy.save(tmp_path / "policy")
    loaded = load_policy(tmp_path / "policy")
    assert isinstance(loaded, D3rlpyPolicy)
    batch = {key: np.stack([value] * 4) for key, value in obs.items()}
    np.testing.assert_array_equal(loaded.act(batch), policy.act(batch))


def test_seqrec_train_and_evaluate(tmp_path):
    algo_config = {
        "dataset": DATASET,
        "algo": "discrete_cql",
        "steps": 5,
        "batch_size": 16,
        "hidden_units": [16],
    }
    run = tmp_path / "run"
    trained = runner.invoke(
        app, ["train", "--agent", "d3rlpy", "--algo-config", json.dumps(algo_config), "--out", str(run)]
    )
    assert trained.exit_code == 0, trained.output
    env_config = json.dumps(
        {"sessions_per_episode": 3, "world_config": world_env_kwargs(SMALL, 1, 3)["world_config"]}
    )
    result = runner.invoke(
        app, ["evaluate", str(run), "--episodes", "8", "--env-config", env_config, "--json"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output.strip().splitlines()[-1])
    assert stats["episodes"] == 8 and np.isfinite(stats["mean_return"])


def test_refusals():
    with pytest.raises(ValueError, match="D3rlpyConfig.algo"):
        D3rlpyConfig(dataset=DATASET, algo="cql")
    with pytest.raises(ValueError, match="D3rlpyConfig.steps"):
        D3rlpyConfig(dataset=DATASET, steps=0)
