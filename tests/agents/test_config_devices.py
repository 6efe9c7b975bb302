"""Every agent config refuses an unknown torch device by name, before anything is built."""

import pytest

from agents.d3rlpy.config import D3rlpyConfig
from agents.sim2rec.config import Sim2RecConfig
from agents.tscac.config import TSCACConfig
from recsim_env.errors import ArgumentError

CONFIGS = {
    "TSCACConfig": lambda **kw: TSCACConfig(**kw),
    "Sim2RecConfig": lambda **kw: Sim2RecConfig(**kw),
    "D3rlpyConfig": lambda **kw: D3rlpyConfig(dataset="seqrec/world-egreedy-v0", **kw),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_unknown_device_is_refused_naming_the_field(name):
    with pytest.raises(ArgumentError, match=rf"{name}\.device must be one of \['auto', 'cpu', 'cuda'\], got 'gpu'"):
        CONFIGS[name](device="gpu")


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
def test_the_documented_devices_are_accepted(name, device):
    assert CONFIGS[name](device=device).device == device
