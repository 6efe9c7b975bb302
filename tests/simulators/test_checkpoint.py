"""Save -> load -> identical predictions; damaged or mismatched checkpoints are refused clearly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recsim_env.data import LoggedInteractions
from recsim_env.errors import DataError


def _predictions(simulator):
    rng = np.random.default_rng(0)
    users = rng.integers(0, simulator.n_users, size=32)
    start = simulator.initial_state(users, rng.random((32, simulator.n_start_uniforms)))
    slates = rng.integers(0, simulator.n_items, size=(32, 3))
    return simulator.predict(
        start.state.items, start.state.inputs, slates, user_features=start.state.user_features
    )


def test_save_load_gives_identical_predictions(tiny_fit, saved_simulator):
    import simulators

    loaded = simulators.load(saved_simulator)
    before, after = _predictions(tiny_fit.simulator), _predictions(loaded)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    assert loaded.signals == tiny_fit.simulator.signals
    for a, b in zip(tiny_fit.simulator.members, loaded.members):
        np.testing.assert_array_equal(a.temperature.numpy(), b.temperature.numpy())


def _copy(saved, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target


def test_truncated_weights_are_refused_naming_the_file(saved_simulator, tmp_path):
    import simulators

    copy = _copy(saved_simulator, tmp_path)
    weights = copy / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"weights\.pt.*truncated"):
        simulators.load(copy)


def test_corrupt_and_missing_files_are_refused(saved_simulator, tmp_path):
    import simulators

    copy = _copy(saved_simulator, tmp_path)
    data = bytearray((copy / "start_pool.npz").read_bytes())
    data[200] ^= 0xFF
    (copy / "start_pool.npz").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"start_pool\.npz.*SHA-256"):
        simulators.load(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json"):
        simulators.load(copy)
    with pytest.raises(DataError, match="not a saved simulator"):
        simulators.load(tmp_path / "nowhere")


def test_catalogue_mismatch_is_refused(saved_simulator, world_logs):
    import simulators

    simulators.load(saved_simulator, data=world_logs)  # the same catalogue: fine
    frame = world_logs.frame[world_logs.frame["item_id"] >= 10]
    other = LoggedInteractions.from_frame(frame, feedback_cols=world_logs.feedback_columns)  # only seen items
    assert other.n_items != world_logs.n_items
    with pytest.raises(DataError, match=r"item_ids\.json.*catalogue mismatch"):
        simulators.load(saved_simulator, data=other)


def test_unknown_config_key_is_refused(saved_simulator, tmp_path):
    import simulators
    from simulators.checkpoint import write_manifest

    copy = _copy(saved_simulator, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config["learning_rte"] = 0.1
    (copy / "config.json").write_text(json.dumps(config))
    write_manifest(copy)
    with pytest.raises(DataError, match=r"config\.json.*learning_rte"):
        simulators.load(copy)


def test_a_simulator_saved_before_feature_tables_and_platt_scaling_still_loads(world_logs, tmp_path):
    """Checkpoints written before simulators read users / items tables, pooled clicks or had an interest
    filter or a window stride, and before calibration had a bias, lack those keys, weights and arrays: they
    load, read no features and predict as before."""
    import io

    import torch

    import simulators
    from simulators.checkpoint import write_manifest
    from tests.simulators.conftest import TINY

    settings = {
        "user_features": False,
        "item_features": False,
        "click_pooling": False,
        "interest_filter": False,
    }
    config = simulators.SimulatorConfig(**TINY, **settings, window_stride=None)
    fitted = simulators.fit(world_logs, config).simulator
    directory = simulators.save(fitted, tmp_path / "old")
    old_config = json.loads((directory / "config.json").read_text())
    for key in (*settings, "window_stride"):
        del old_config[key]
    (directory / "config.json").write_text(json.dumps(old_config))
    old_schema = json.loads((directory / "schema.json").read_text())
    del old_schema["user_features"], old_schema["item_features"]
    (directory / "schema.json").write_text(json.dumps(old_schema))
    weights = torch.load(directory / "weights.pt", weights_only=True)
    del weights["member_0"]["calibration_bias"]
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    (directory / "weights.pt").write_bytes(buffer.getvalue())
    with np.load(directory / "start_pool.npz") as arrays:
        pool = {k: v for k, v in arrays.items() if k != "user_features"}
    np.savez(directory / "start_pool.npz", **pool)
    write_manifest(directory)

    loaded = simulators.load(directory)
    assert not loaded.config.user_features and not loaded.config.item_features
    assert not loaded.config.interest_filter and loaded.config.window_stride is None
    assert loaded.n_user_features == 0 and loaded.schema.item_features.width == 0
    assert float(loaded.members[0].calibration_bias.abs().sum()) == 0.0
    fitted.members[0].calibration_bias.zero_()  # what the old checkpoint had
    before, after = _predictions(fitted), _predictions(loaded)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
