"""Hostile artifacts: a tampered file in any slot of any saved kind never runs code and is refused,
naming the file.

Every attack plants a pickle whose unpickling would create a marker file; the marker must never
appear. Each artifact kind (encoder, simulator, every policy kind, an SB3 run's policy and state) is
attacked in every file it lists, four ways: the file replaced by the pickle (hash check), the same with
the manifest re-hashed (the parser refuses it), one flipped byte, and a truncation.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from recsim_env.errors import CheckpointError
from tests.conftest import rewrite_manifest

MARKER_NAME = "PWNED"


class Payload:
    """Unpickling this runs `os.system("touch <marker>")`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_bytes(marker: Path) -> bytes:
    return pickle.dumps({"state": Payload(marker)})


def evil_torch_file(marker: Path) -> bytes:
    """A `torch.save`-style zip archive whose `data.pkl` is the payload."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", evil_bytes(marker))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- artifacts
@pytest.fixture(scope="module")
def world_logs():
    from recsim_env.world.logging import log_world

    return log_world("uniform", steps=2000, seed=0, progress=False)


@pytest.fixture(scope="module")
def artifacts(world_logs, tmp_path_factory):
    """One saved artifact of each kind: name -> (directory, loader)."""
    import torch

    import agents.dt4ier as D
    import agents.tscac as T
    import simulators
    from agents import load_policy
    from agents.baselines import fit_baseline
    from agents.encoder_policy import EncoderPolicy
    from agents.sim2rec import Sim2RecConfig
    from agents.sim2rec import train as train_sim2rec
    from agents.training import TrainConfig, train
    from agents.training.config import open_training_state
    from recsim_env import encoders

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("artifacts")
    encoder = encoders.build("sasrec", {"n_items": world_logs.n_items, "max_len": 8, "d_model": 16, "n_layers": 1})
    encoders.save(root / "encoder", encoder, item_ids=world_logs.item_ids)
    tiny = {"d_model": 16, "history_len": 8, "epochs": 1, "batch_size": 128, "dropout": 0.0, "seed": 0}
    simulators.save(simulators.fit(world_logs, simulators.SimulatorConfig(**tiny)).simulator, root / "simulator")
    for name in ("uniform", "popularity", "greedy"):
        fit_baseline(name, world_logs).save(root / name)
    EncoderPolicy(encoders.load_checkpoint(root / "encoder")).save(root / "encoder-policy")
    dt_config = D.DT4IERConfig(d_model=8, context_len=4, steps=2, balance_steps=2, batch_size=16, n_negatives=8)
    D.train(dt_config, world_logs, progress=False)[0].save(root / "dt4ier")
    ts_config = T.TSCACConfig(d_model=8, n_layers=1, critic_steps=2, actor_steps=2, batch_size=32, history_len=8)
    T.train(ts_config, world_logs, progress=False)[0].save(root / "tscac")
    sim2rec = Sim2RecConfig(
        num_envs=4, num_minibatches=2, window=5, hidden_dim=16, context_dim=8, env_kwargs={"time_budget": 20},
        total_timesteps=64,
    )  # fmt: skip
    train_sim2rec(sim2rec, progress=False).save(root / "sim2rec")
    for algo in ("ppo", "dqn"):
        config = TrainConfig(
            algo=algo, num_envs=2, stop_timesteps=128, eval_interval=64, eval_episodes=1,
            encoder_config={"d_model": 16, "n_layers": 1}, env_config={"max_steps": 10},
            algo_config={"n_steps": 32, "batch_size": 32} if algo == "ppo" else {"learning_starts": 16},
        )  # fmt: skip
        train(config, root / f"sb3-{algo}", progress=False)

    def resume_state(run: Path):
        from agents.training.sb3 import _make_env, build_model, restore_training_state

        state, config, progress = open_training_state(run)
        env = _make_env(config, config.num_envs, 0)
        restore_training_state(build_model(config, env), state, progress)

    found = {
        "encoder": (root / "encoder", encoders.load),
        "simulator": (root / "simulator", simulators.load),
        "encoder-policy": (root / "encoder-policy", load_policy),
        "sb3-ppo policy": (root / "sb3-ppo" / "policy", load_policy),
        "sb3-dqn policy": (root / "sb3-dqn" / "policy", load_policy),
        "sb3-ppo state": (root / "sb3-ppo" / "state", lambda d: resume_state(d.parent)),
        "sb3-dqn state": (root / "sb3-dqn" / "state", lambda d: resume_state(d.parent)),
    }
    for name in ("uniform", "popularity", "greedy", "dt4ier", "tscac", "sim2rec"):
        found[name] = (root / name, load_policy)
    for directory, load in found.values():
        load(directory)  # each loads before it is attacked
    return found


def _slots():
    """(artifact, file) pairs, listed from the manifests written by a throwaway save of each kind."""
    return [
        ("encoder", name) for name in ("manifest.json", "config.json", "item_ids.json", "weights.safetensors")
    ] + [
        ("simulator", name)
        for name in ("manifest.json", "config.json", "schema.json", "item_ids.json", "weights.safetensors", "start_pool.safetensors")
    ] + [
        ("encoder-policy", name)
        for name in ("manifest.json", "policy.json", "config.json", "item_ids.json", "weights.safetensors")
    ] + [
        (f"sb3-{algo} policy", name) for algo in ("ppo", "dqn") for name in ("manifest.json", "policy.json", "weights.safetensors")
    ] + [
        (f"sb3-{algo} state", name)
        for algo in ("ppo", "dqn")
        for name in ("manifest.json", "train_config.json", "progress.json", "weights.safetensors", "optimizer.json", "optimizer.safetensors")
        + (("replay_buffer.json", "replay_buffer.safetensors") if algo == "dqn" else ())
    ] + [("uniform", name) for name in ("manifest.json", "policy.json")] + [
        (kind, name) for kind in ("popularity", "greedy") for name in ("manifest.json", "policy.json", "item_stats.safetensors")
    ] + [
        (kind, name) for kind in ("dt4ier", "tscac", "sim2rec") for name in ("manifest.json", "policy.json", "config.json", "weights.safetensors")
    ] + [("dt4ier", "stats.json")]  # fmt: skip


def _attacked(artifacts, kind, name, tmp_path):
    source, load = artifacts[kind]
    target = tmp_path / "copy" / source.parent.name / source.name
    shutil.copytree(source.parent if source.name in ("policy", "state") else source,
                    target.parent if source.name in ("policy", "state") else target)  # fmt: skip
    assert (target / name).is_file(), f"{kind} has no {name}"
    return target, load


ATTACKS = ("pickle", "pickle-rehashed", "bit-flip", "truncation")


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize(("kind", "name"), _slots())
def test_a_tampered_file_never_runs_code_and_is_refused_naming_it(artifacts, kind, name, attack, tmp_path):
    if attack == "pickle-rehashed" and name == "manifest.json":
        pytest.skip("re-hashing rewrites the manifest itself: covered by the manifest tests below")
    target, load = _attacked(artifacts, kind, name, tmp_path)
    marker = tmp_path / MARKER_NAME
    file = target / name
    if attack.startswith("pickle"):
        file.write_bytes(evil_torch_file(marker) if name.endswith(".safetensors") else evil_bytes(marker))
        if attack == "pickle-rehashed":
            rewrite_manifest(target)
    elif attack == "bit-flip":
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0x20
        file.write_bytes(bytes(data))
    else:
        file.write_bytes(file.read_bytes()[: max(len(file.read_bytes()) // 2, 1)])
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load(target)
    assert not marker.exists(), "the payload ran"


# ---------------------------------------------------------------------------------------------- legacy slots
@pytest.mark.parametrize("slot", ["model.zip", "replay_buffer.pkl", "weights.pt", "module_state.pt", "data.pkl"])
def test_pickles_beside_a_saved_run_are_never_read(artifacts, slot, tmp_path):
    """The files format 1 (or SB3, or a user) left in a run directory are not part of the artifact."""
    from agents import load_policy
    from agents.training import TrainConfig, train

    run = tmp_path / "run"
    shutil.copytree(artifacts["sb3-dqn policy"][0].parent, run)
    marker = tmp_path / MARKER_NAME
    for where in (run, run / "policy", run / "state"):
        (where / slot).write_bytes(evil_bytes(marker))
    load_policy(run)
    config = TrainConfig.load(run)
    train(TrainConfig(**{**config.to_dict(), "stop_timesteps": 160}), run, resume=True, progress=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "files",
    [
        {"policy.json": json.dumps({"kind": "sb3", "format_version": 1, "config": {"algo": "ppo", "n_items": 500}}),
         "model.zip": None},
        {"policy.json": json.dumps({"kind": "tscac", "format_version": 1, "config": {"n_items": 500}}),
         "config.json": "{}", "weights.pt": None},
        {"checkpoint.json": json.dumps({"encoder": "sasrec", "format_version": 1, "n_items": 5}),
         "config.json": json.dumps({"n_items": 5}), "item_ids.json": "[0, 1, 2, 3, 4]", "weights.pt": None},
        {"policy.json": json.dumps({"kind": "rllib", "format_version": 1, "config": {}}), "module_state.pt": None},
    ],
    ids=["sb3", "tscac", "encoder", "rllib"],
)  # fmt: skip
def test_a_format_1_directory_with_a_payload_is_refused_by_load_and_by_convert(files, tmp_path):
    """Loading says how to convert; converting reads tensors with `weights_only=True`, which refuses
    the payload (SB3's pickled `data` entry is never opened)."""
    import zipfile

    from agents import load_policy
    from agents.convert import convert

    marker = tmp_path / MARKER_NAME
    old = tmp_path / "old"
    old.mkdir()
    for name, text in files.items():
        if name == "model.zip":
            with zipfile.ZipFile(old / name, "w") as archive:
                archive.writestr("data", evil_bytes(marker))
                archive.writestr("policy.pth", evil_torch_file(marker))
        elif text is None:
            (old / name).write_bytes(evil_torch_file(marker))
        else:
            (old / name).write_text(text)
    (old / "train_config.json").write_text(json.dumps({"algo": "ppo"}))
    with pytest.raises(CheckpointError, match="format 1.*seqrec convert"):
        load_policy(old)
    with pytest.raises(CheckpointError):
        convert(old)
    assert not marker.exists()
    assert (old / "policy.json").is_file() or (old / "checkpoint.json").is_file()  # nothing replaced


# ---------------------------------------------------------------------------------------------- manifests
def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def _write_manifest(directory: Path, manifest: dict, *, fix_digest: bool = True) -> None:
    from recsim_env.checkpoint import _self_digest

    if fix_digest:
        manifest["sha256"] = _self_digest(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("../outside.json", "'.', '..'"),
        ("sub/../../outside.json", "'.', '..'"),
        ("/etc/passwd", "must be relative"),
        ("C:/windows/win.ini", "':'"),
        ("weights\\..\\..\\x", "backslash"),
        ("", "non-empty"),
        ("./policy.json", "'.', '..'"),
        ("nul\x00byte", "NUL"),
    ],
)
def test_manifest_paths_that_leave_the_artifact_are_refused(artifacts, key, message, tmp_path):
    from agents import load_policy

    target = tmp_path / "p"
    shutil.copytree(artifacts["greedy"][0], target)
    (tmp_path / "outside.json").write_text("{}")
    manifest = _manifest(target)
    manifest["files"][key] = {"bytes": 2, "sha256": "0" * 64}
    _write_manifest(target, manifest)
    with pytest.raises(CheckpointError, match=rf"manifest\.json.*{message}"):
        load_policy(target)


def test_a_listed_symbolic_link_is_refused(artifacts, tmp_path):
    from agents import load_policy

    target = tmp_path / "p"
    shutil.copytree(artifacts["greedy"][0], target)
    secret = tmp_path / "secret.safetensors"
    shutil.copy(target / "item_stats.safetensors", secret)
    (target / "item_stats.safetensors").unlink()
    (target / "item_stats.safetensors").symlink_to(secret)
    with pytest.raises(CheckpointError, match=r"item_stats\.safetensors.*symbolic link"):
        load_policy(target)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format="something-else"), "not a recsim-env artifact"),
        (lambda m: m.update(format_version=3), "format_version 3"),
        (lambda m: m.update(format_version="2"), "format_version '2'"),
        (lambda m: m.update(kind="spaceship"), "unknown kind 'spaceship'"),
        (lambda m: m.update(kind="simulator"), "holds a 'simulator' artifact, expected policy"),
        (lambda m: m.update(files=[]), "'files' must be an object"),
        (lambda m: m.update(metadata="x"), "'metadata' must be a JSON object"),
        (lambda m: m["files"].update({"policy.json": {"bytes": -1, "sha256": "0" * 64}}), "'bytes' \\(int >= 0\\)"),
        (lambda m: m["files"].update({"policy.json": {"bytes": True, "sha256": "0" * 64}}), "'bytes' \\(int >= 0\\)"),
        (lambda m: m["files"].update({"policy.json": {"bytes": 10, "sha256": "abc"}}), "64 hex digits"),
        (lambda m: m["files"].pop("policy.json"), "policy.json: not listed"),
        (lambda m: m["files"].update({"ghost.json": {"bytes": 2, "sha256": "0" * 64}}), "ghost.json: missing"),
    ],
)
def test_malformed_manifests_are_refused_naming_the_manifest(artifacts, change, message, tmp_path):
    from agents import load_policy

    target = tmp_path / "p"
    shutil.copytree(artifacts["uniform"][0], target)
    manifest = _manifest(target)
    change(manifest)
    _write_manifest(target, manifest)
    with pytest.raises(CheckpointError, match=message):
        load_policy(target)


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[1, 2]", b"null", b"\xff\xfe", json.dumps({"format_version": 2}).encode()],
    ids=["empty", "cut", "list", "null", "not-utf8", "no-digest"],
)
def test_unreadable_manifests_are_refused_naming_the_manifest(artifacts, content, tmp_path):
    from agents import load_policy

    target = tmp_path / "p"
    shutil.copytree(artifacts["uniform"][0], target)
    (target / "manifest.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        load_policy(target)


def test_an_edited_manifest_is_refused_by_its_own_digest(artifacts, tmp_path):
    from agents import load_policy

    target = tmp_path / "p"
    shutil.copytree(artifacts["uniform"][0], target)
    manifest = _manifest(target)
    manifest["metadata"]["policy_kind"] = "greedy"
    _write_manifest(target, manifest, fix_digest=False)
    with pytest.raises(CheckpointError, match=r"manifest\.json: corrupt: its own SHA-256"):
        load_policy(target)


def test_an_oversized_manifest_is_refused_before_it_is_parsed(artifacts, tmp_path, monkeypatch):
    import recsim_env.checkpoint as checkpoint
    from agents import load_policy

    target = tmp_path / "p"
    shutil.copytree(artifacts["uniform"][0], target)
    monkeypatch.setattr(checkpoint, "MAX_MANIFEST_BYTES", 64)
    with pytest.raises(CheckpointError, match=r"manifest\.json.*over the 64"):
        load_policy(target)


# ---------------------------------------------------------------------------------------------- policy kinds
@pytest.mark.parametrize(
    "kind",
    ["evil_module:Evil", "os:system", "subprocess:Popen", "agents.policy:Policy", "builtins:eval", "evil_module"],
)
def test_a_policy_kind_outside_the_registry_is_refused_before_anything_is_imported(artifacts, kind, tmp_path, monkeypatch):
    import sys

    from agents import load_policy

    marker = tmp_path / MARKER_NAME
    (tmp_path / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Evil: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    target = tmp_path / "p"
    shutil.copytree(artifacts["uniform"][0], target)
    (target / "policy.json").write_text(json.dumps({"kind": kind, "config": {}}))
    rewrite_manifest(target)
    with pytest.raises(CheckpointError, match="unknown policy kind"):
        load_policy(target)
    assert not marker.exists() and "evil_module" not in sys.modules


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_items", "500", "'n_items': must be an integer"),
        ("n_items", True, "'n_items': must be an integer"),
        ("slate_size", 1.5, "'slate_size': must be an integer"),
        ("prior_strength", "NaN", "'prior_strength': must be a finite number"),
        ("name", 3, "'name': must be a string"),
        ("extra", 1, "unknown setting"),
    ],
)
def test_policy_configs_are_type_checked(artifacts, field, value, message, tmp_path):
    from agents import load_policy

    target = tmp_path / "p"
    shutil.copytree(artifacts["greedy"][0], target)
    manifest = json.loads((target / "policy.json").read_text())
    manifest["config"][field] = value
    (target / "policy.json").write_text(json.dumps(manifest))
    rewrite_manifest(target)
    with pytest.raises(CheckpointError, match=message):
        load_policy(target)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("env_id", "os:system", "env_id"),
        ("env_id", "gymnasium.envs.classic_control:CartPole-v1", "env_id"),
        ("num_envs", "8", "'num_envs': must be an integer"),
        ("stop_timesteps", -5, "stop_timesteps"),
        ("encoder", "evil", "unknown encoder"),
        ("algo_config", [], "'algo_config': must be a JSON object"),
        ("secret", 1, "unknown field"),
    ],
)
def test_a_tampered_training_config_is_refused_on_resume(artifacts, field, value, message, tmp_path):
    from agents.training import TrainConfig

    run = tmp_path / "run"
    shutil.copytree(artifacts["sb3-ppo state"][0].parent, run)
    config = json.loads((run / "state" / "train_config.json").read_text())
    config[field] = value
    (run / "state" / "train_config.json").write_text(json.dumps(config))
    rewrite_manifest(run / "state")
    with pytest.raises(CheckpointError, match=message):
        TrainConfig.load(run)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(items=a["items"] + 10_000), "outside the catalogue"),
        (lambda a: a.update(offsets=a["offsets"][::-1].copy()), "'offsets' must start at 0"),
        (lambda a: a.update(leave=a["leave"][:-1]), "'leave' has shape"),
        (lambda a: a.pop("return_gap"), "missing array"),
        (lambda a: a.pop("return_gap_known"), "missing array"),
        (lambda a: a.update(return_gap=np.full_like(a["return_gap"], np.nan)), "'return_gap' must be finite"),
        (lambda a: a.update(return_gap_known=a["return_gap_known"].astype(np.uint8)), "must be bool"),
    ],
)
def test_a_start_pool_that_describes_no_valid_sequences_is_refused(artifacts, change, message, tmp_path):
    import simulators
    from recsim_env.checkpoint import tensors_from_bytes, write_tensors

    target = tmp_path / "sim"
    shutil.copytree(artifacts["simulator"][0], target)
    arrays = tensors_from_bytes((target / "start_pool.safetensors").read_bytes())
    change(arrays)
    write_tensors(target / "start_pool.safetensors", arrays)
    rewrite_manifest(target)
    with pytest.raises(CheckpointError, match=rf"start_pool\.safetensors.*{message}"):
        simulators.load(target)


# ---------------------------------------------------------------------------------------------- whole saves
def test_an_interrupted_save_leaves_the_old_artifact_whole(artifacts, tmp_path):
    from agents import load_policy
    from recsim_env.checkpoint import save_artifact

    target = tmp_path / "p"
    shutil.copytree(artifacts["greedy"][0], target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def write(tmp: Path) -> None:
        (tmp / "policy.json").write_text("{}")
        raise KeyboardInterrupt  # killed half-way

    with pytest.raises(KeyboardInterrupt):
        save_artifact(target, "policy", write)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no temporary directory left behind
    load_policy(target)


def test_saving_over_an_artifact_replaces_it_whole(artifacts, tmp_path):
    from agents import load_policy
    from agents.baselines import baseline_policy

    target = tmp_path / "p"
    shutil.copytree(artifacts["greedy"][0], target)
    (target / "stale.json").write_text("{}")
    baseline_policy("uniform", n_items=500).save(target)
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "policy.json"]
    assert load_policy(target).name == "uniform"
    assert [p.name for p in tmp_path.iterdir()] == ["p"]


def test_a_file_that_is_not_a_directory_is_never_replaced(tmp_path):
    from agents.baselines import baseline_policy

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a directory"):
        baseline_policy("uniform", n_items=5).save(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_objects_that_would_need_pickle_cannot_be_saved(tmp_path):
    from recsim_env.checkpoint import encode_tree

    with pytest.raises(TypeError, match="Payload cannot be saved"):
        encode_tree({"a": [1, Payload(tmp_path / MARKER_NAME)]})


@pytest.mark.parametrize(
    "kind", ["uniform", "greedy", "encoder-policy", "dt4ier", "tscac", "sim2rec", "sb3-ppo policy", "sb3-dqn policy"]
)
@pytest.mark.parametrize("name", ["policy.json", "weights"])
def test_seqrec_evaluate_refuses_every_tampered_policy_kind(artifacts, kind, name, tmp_path):
    from typer.testing import CliRunner

    from recsim_env.cli import build_app

    source = artifacts[kind][0]
    target = tmp_path / "p"
    shutil.copytree(source, target)
    if name == "weights":
        listed = json.loads((target / "manifest.json").read_text())["files"]
        name = next((n for n in listed if n.endswith(".safetensors")), "policy.json")
    marker = tmp_path / MARKER_NAME
    (target / name).write_bytes(evil_torch_file(marker) if name.endswith(".safetensors") else evil_bytes(marker))
    rewrite_manifest(target)
    result = CliRunner().invoke(build_app(), ["evaluate", str(target), "--episodes", "2"])
    assert result.exit_code == 2 and name in result.output, result.output
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("optimizer.json", json.dumps({"__items__": 5}), "malformed state"),
        ("optimizer.json", json.dumps({"__items__": [[[1], 2]]}), "malformed state"),
        ("optimizer.json", "[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("replay_buffer.json", json.dumps({"__tensor__": "nope"}), "refers to tensor 'nope'"),
        ("replay_buffer.json", json.dumps({"__float__": "1e999"}), "bad float"),
    ],
)
def test_malformed_nested_state_is_refused_naming_the_file(artifacts, name, content, message, tmp_path):
    from agents.training.config import open_training_state
    from agents.training.sb3 import _make_env, build_model, restore_training_state

    run = tmp_path / "run"
    shutil.copytree(artifacts["sb3-dqn state"][0].parent, run)
    (run / "state" / name).write_text(content)
    rewrite_manifest(run / "state")
    state, config, progress = open_training_state(run)
    with pytest.raises(CheckpointError, match=rf"{name.split('.')[0]}.*{message}"):
        restore_training_state(build_model(config, _make_env(config, config.num_envs, 0)), state, progress)


def test_a_directory_of_other_files_is_never_replaced_by_a_save(tmp_path):
    """`--out ~/projects` by mistake must not wipe the folder: only an artifact (or an empty folder)
    is replaced."""
    from agents.baselines import baseline_policy

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(CheckpointError, match="is not a saved artifact; refusing to replace it"):
        baseline_policy("uniform", n_items=5).save(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    (tmp_path / "empty").mkdir()
    baseline_policy("uniform", n_items=5).save(tmp_path / "empty")  # an empty folder is fine
