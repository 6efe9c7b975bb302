"""A hostile RLlib run directory: RLlib's own `checkpoint/` is pickles, and resuming or loading a run
must never read it unless the caller trusts it (`trust_checkpoint=True`).

Every pickle of `checkpoint/` (and, for the resume, every other file there too) is replaced by one
whose unpickling would create a marker file; a resume without trust (weights from `state/`) and
`agents.load_policy` must succeed and leave no marker, while a trusting resume does run it (the
control that shows the plant is live). A tampered `state/module_state.safetensors` and a `policy.json` naming an environment id
outside ours are refused, naming the file.

The checks of `policy.json` need no Ray (they run in the default suite too); the others are marked
`rllib`.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recsim_env.errors import CheckpointError
from tests.conftest import rewrite_manifest

MARKER_NAME = "PWNED"
TINY = dict(
    backend="rllib",
    num_envs=16,
    num_env_runners=0,
    eval_episodes=2,
    encoder_config={"d_model": 16, "n_layers": 1},
    env_config={"max_steps": 20},
    algo_config={"train_batch_size_per_learner": 256, "minibatch_size": 128, "num_epochs": 1},
)


class Evil:
    """Unpickling this creates (opens for writing) the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant_pickles(directory: Path, marker: Path, *, every_file: bool = False) -> int:
    """Overwrite every pickle (`*.pkl`) under `directory` with the payload, or `every_file`; returns
    how many. RLlib's JSON metadata is kept by default, so that a trusting restore reaches the pickles."""
    payload = pickle.dumps({"state": Evil(marker)})
    files = [
        path for path in directory.rglob("*") if path.is_file() and (every_file or path.suffix == ".pkl")
    ]
    for path in files:
        path.write_bytes(payload)
    return len(files)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny PPO run (two iterations), shared by the tests, which work on copies."""
    from tests.optional import import_extra
    import_extra("ray", extra="rllib")
    import ray

    from agents.training import TrainConfig, train

    out = tmp_path_factory.mktemp("rllib_run") / "run"
    config = TrainConfig(algo="ppo", stop_timesteps=512, eval_interval=512, **TINY)
    result = train(config, out, progress=False)
    yield result
    ray.shutdown()


@pytest.fixture
def hostile_run(trained_run, tmp_path):
    """A copy of the run with every file of `checkpoint/` a payload pickle; `(run, marker)`."""
    run = tmp_path / "run"
    shutil.copytree(trained_run.out, run)
    marker = tmp_path / MARKER_NAME
    assert plant_pickles(run / "checkpoint", marker) > 0
    assert not marker.exists()
    return run, marker


@pytest.mark.rllib
def test_resume_without_trust_never_reads_the_checkpoint(hostile_run, trained_run):
    from agents.rllib.train import MODULE_STATE_FILE
    from agents.training import TrainConfig, train
    from agents.training.config import open_training_state

    run, marker = hostile_run
    plant_pickles(run / "checkpoint", marker, every_file=True)  # its JSON metadata too
    saved = open_training_state(run)[0].read_tensors(MODULE_STATE_FILE)
    config = TrainConfig(**{**TrainConfig.load(run).to_dict(), "stop_timesteps": 768})
    result = train(config, run, resume=True, progress=False)
    assert not marker.exists()
    assert result.timesteps >= 768
    state, _, progress = open_training_state(run)
    assert progress["timesteps"] == result.timesteps
    # The resumed run trained on from the saved weights (not from a fresh initialisation) and
    # saved a new RLlib checkpoint in place of the planted files.
    resumed = state.read_tensors(MODULE_STATE_FILE)
    assert set(resumed) == set(saved)
    json.loads((run / "checkpoint" / "rllib_checkpoint.json").read_text())  # RLlib's, written anew


@pytest.mark.rllib
def test_the_planted_checkpoint_would_run_its_payload_if_trusted(hostile_run):
    """The control: `trust_checkpoint=True` unpickles `checkpoint/`, and the payload runs. This is why
    it is behind a flag, and shows the plant above is live."""
    from agents.training import TrainConfig, train

    run, marker = hostile_run
    with pytest.raises(Exception):  # noqa: B017 (RLlib fails on what the payload returned, in its own way)
        train(TrainConfig.load(run), run, resume=True, progress=False, trust_checkpoint=True)
    assert marker.exists()


@pytest.mark.rllib
def test_resume_without_training_keeps_the_saved_weights_exactly(hostile_run, trained_run):
    """stop_timesteps already reached: the loaded state is saved back as it was loaded."""
    import numpy as np

    from agents.rllib.train import MODULE_STATE_FILE
    from agents.training import TrainConfig, train
    from agents.training.config import open_training_state

    run, marker = hostile_run
    saved = open_training_state(run)[0].read_tensors(MODULE_STATE_FILE)
    result = train(TrainConfig.load(run), run, resume=True, progress=False)
    assert not marker.exists()
    assert result.timesteps == trained_run.timesteps
    resumed = open_training_state(run)[0].read_tensors(MODULE_STATE_FILE)
    for key, value in saved.items():
        np.testing.assert_array_equal(resumed[key], value)


@pytest.mark.rllib
def test_load_policy_of_a_hostile_run_never_reads_the_checkpoint(hostile_run):
    import gymnasium as gym

    from agents import load_policy
    from agents.rllib.policy import RLModulePolicy

    run, marker = hostile_run
    policy = load_policy(run)
    assert isinstance(policy, RLModulePolicy)
    obs, _ = gym.make("SeqRec-v0", max_steps=20).reset(seed=0)
    policy.act(obs)
    assert not marker.exists()


@pytest.mark.rllib
def test_a_tampered_module_state_is_refused_naming_the_file(hostile_run):
    from agents.training import TrainConfig, train

    run, marker = hostile_run
    config = TrainConfig.load(run)
    target = run / "state" / "module_state.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"state/module_state\.safetensors: corrupt"):
        train(config, run, resume=True, progress=False)
    assert not marker.exists()


@pytest.mark.rllib
def test_a_module_state_that_does_not_fit_is_refused_naming_the_file(hostile_run):
    """A re-hashed state with one tensor left out: the strict load into the learner refuses it."""
    from safetensors.numpy import load, save

    from agents.training import TrainConfig, train

    run, marker = hostile_run
    target = run / "state" / "module_state.safetensors"
    tensors = load(target.read_bytes())
    tensors.pop(sorted(tensors)[0])
    target.write_bytes(save(tensors))
    rewrite_manifest(run / "state")
    with pytest.raises(CheckpointError, match=r"module_state\.safetensors: the module state does not fit"):
        train(TrainConfig.load(run), run, resume=True, progress=False)
    assert not marker.exists()


@pytest.mark.rllib
def test_a_payload_in_the_module_state_slot_is_refused(hostile_run):
    """The pickle in `state/`'s own slot, with the manifest re-hashed: safetensors refuses to parse it."""
    from agents.training import TrainConfig, train

    run, marker = hostile_run
    (run / "state" / "module_state.safetensors").write_bytes(pickle.dumps({"state": Evil(marker)}))
    rewrite_manifest(run / "state")
    with pytest.raises(CheckpointError, match=r"module_state\.safetensors: not a readable safetensors file"):
        train(TrainConfig.load(run), run, resume=True, progress=False)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- policy.json (no Ray)
def _policy_artifact(directory: Path, config: dict) -> Path:
    """A policy artifact of kind "rllib" with `config` and a small (numpy) weights file."""
    import numpy as np

    from agents.policy import save_policy
    from recsim_env.checkpoint import write_tensors

    save_policy(
        directory, "rllib", config, lambda tmp: write_tensors(tmp / "weights.safetensors", {"w": np.zeros(2)})
    )
    return directory


GOOD_CONFIG = {
    "algo": "ppo",
    "env_id": "SeqRec-v0",
    "env_config": {},
    "module_config": {"encoder": "sasrec", "encoder_config": {"n_items": 500}, "encoder_checkpoint": None},
}


def _refused_in_a_fresh_process(directory: Path, pattern: str) -> None:
    """`agents.load_policy(directory)` in a new interpreter: refused with `pattern`, having imported
    neither Ray nor the RLModules, built nothing and created no environment."""
    script = f"""
import re, sys
import gymnasium as gym
def no_make(*args, **kwargs):
    raise AssertionError("an environment was made")
gym.make = no_make
from agents import load_policy
from recsim_env.errors import CheckpointError
try:
    load_policy({str(directory)!r})
except CheckpointError as error:
    assert re.search({pattern!r}, str(error)), str(error)
else:
    raise AssertionError("not refused")
for name in ("ray", "agents.rllib.module", "agents.sb3"):
    assert name not in sys.modules, name + " was imported"
print("refused")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=300,
    )
    assert done.returncode == 0 and "refused" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"env_id": "os:system"}, r"policy\.json: env_id 'os:system' is not one of"),
        ({"algo": "os:system"}, r"policy\.json: unknown algo 'os:system'"),
        ({"env_id": ["SeqRec-v0"]}, r"policy\.json: 'env_id': must be a string"),
        ({"env_config": "max_steps=5"}, r"policy\.json: 'env_config': must be a JSON object"),
        ({"module_config": {"encoder_checkpoint": "/etc"}}, r"'encoder_checkpoint' must be null"),
        ({"module_config": {"encoder": "os:system"}}, r"'module_config': unknown encoder"),
        ({"module_config": {"no_such_key": 1}}, r"'module_config': unknown setting"),
        ({"module_config": {"encoder_config": {"n_items": "500"}}}, r"'encoder_config': field 'n_items'"),
        ({"module_config": {"hidden_dim": True}}, r"'hidden_dim': must be an integer"),
        ({"exec": "os.system"}, r"policy\.json: unknown setting"),
    ],
    ids=[
        "env-id", "algo", "env-id-type", "env-config-type", "encoder-checkpoint", "encoder", "module-key",
        "encoder-config", "hidden-dim", "extra",
    ],
)  # fmt: skip
def test_a_bad_policy_json_is_refused_before_anything_is_built(change, pattern, tmp_path, monkeypatch):
    import gymnasium as gym

    from agents import load_policy
    from agents.rllib.policy import RLModulePolicy

    def refuse(*args, **kwargs):
        raise AssertionError("built or made something from a config that should have been refused")

    monkeypatch.setattr(RLModulePolicy, "build", classmethod(refuse))
    monkeypatch.setattr(gym, "make", refuse)
    directory = _policy_artifact(tmp_path / "policy", {**GOOD_CONFIG, **change})
    with pytest.raises(CheckpointError, match=pattern):
        load_policy(directory)


def test_an_env_id_outside_ours_is_refused_before_ray_or_a_module_is_imported(tmp_path):
    _refused_in_a_fresh_process(
        _policy_artifact(tmp_path / "policy", {**GOOD_CONFIG, "env_id": "os:system"}),
        r"policy\.json: env_id 'os:system' is not one of",
    )


def test_a_policy_json_missing_a_field_is_refused(tmp_path):
    from agents import load_policy

    config = {key: value for key, value in GOOD_CONFIG.items() if key != "env_config"}
    with pytest.raises(CheckpointError, match=r"policy\.json: 'config' has no 'env_config'"):
        load_policy(_policy_artifact(tmp_path / "policy", config))


def test_an_env_id_outside_ours_in_a_run_policy_is_refused(tmp_path):
    """The same refusal through a run directory's `policy/`, edited and re-hashed by hand."""
    from agents import load_policy

    run = tmp_path / "run"
    _policy_artifact(run / "policy", GOOD_CONFIG)
    manifest = json.loads((run / "policy" / "policy.json").read_text())
    manifest["config"]["env_id"] = "os:system"
    (run / "policy" / "policy.json").write_text(json.dumps(manifest))
    with pytest.raises(
        CheckpointError, match=r"policy/policy\.json: (corrupt|truncated or altered)"
    ):  # not re-hashed
        load_policy(run)
    rewrite_manifest(run / "policy")
    with pytest.raises(CheckpointError, match=r"run/policy/policy\.json: env_id 'os:system'"):
        load_policy(run)


@pytest.mark.rllib
def test_a_format_1_rllib_run_converts_and_acts_as_before(trained_run, tmp_path):
    """A run as format 1 wrote it (`policy.json` v1, `module_state.pt`, `train_config.json`, RLlib's
    `checkpoint/`): `seqrec convert` reads the weights with `weights_only=True` and keeps `checkpoint/`."""
    import io
    import json
    import shutil

    import gymnasium as gym
    import numpy as np
    import torch

    from agents import load_policy
    from agents.convert import convert
    from recsim_env.checkpoint import tensors_from_bytes

    trained_run = trained_run.out
    old = tmp_path / "old"
    old.mkdir()
    new_policy = trained_run / "policy"
    manifest = json.loads((new_policy / "policy.json").read_text())
    (old / "policy.json").write_text(json.dumps({**manifest, "format_version": 1}))
    state = tensors_from_bytes((new_policy / "weights.safetensors").read_bytes(), framework="pt")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (old / "module_state.pt").write_bytes(buffer.getvalue())
    (old / "train_config.json").write_bytes((trained_run / "state" / "train_config.json").read_bytes())
    (old / "progress.json").write_text(json.dumps({"timesteps": 7}))
    shutil.copytree(trained_run / "checkpoint", old / "checkpoint")
    convert(old)
    assert sorted(p.name for p in old.iterdir()) == ["checkpoint", "policy", "state"]
    converted, original = load_policy(old), load_policy(trained_run)
    obs, _ = gym.make("SeqRec-v0", **manifest["config"]["env_config"]).reset(seed=0)
    np.testing.assert_allclose(converted.action_distribution(obs), original.action_distribution(obs))
