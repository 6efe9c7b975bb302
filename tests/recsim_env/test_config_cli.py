"""Options generated from config dataclasses: every field settable, validated by the config itself."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from recsim_env.config_cli import config_options, field_docs

runner = CliRunner(env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyConfig:
    width: int = 4
    """Width of the toy. More words after the first sentence."""
    rate: float | None = None
    """Optional rate."""
    flag: bool = False
    """A switch."""
    sizes: tuple[int, ...] = (1, 2)
    """Sizes (JSON)."""

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"ToyConfig field 'width' must be >= 1, got {self.width}")


def _app(seen: list) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """A group."""

    @app.command("toy")
    @config_options(ToyConfig)
    def toy(name: Annotated[str, typer.Option()], config: ToyConfig, loud: Annotated[bool, typer.Option()] = False) -> None:
        seen.append((name, config, loud))

    return app


def test_every_field_is_an_option_with_its_default_and_docstring():
    seen: list = []
    result = runner.invoke(_app(seen), ["toy", "--name", "a"])
    assert result.exit_code == 0, result.output
    assert seen == [("a", ToyConfig(), False)]
    result = runner.invoke(
        _app(seen), ["toy", "--name", "b", "--width", "7", "--rate", "0.5", "--flag", "--sizes", "[3, 4]", "--loud"]
    )
    assert result.exit_code == 0, result.output
    assert seen[-1] == ("b", ToyConfig(width=7, rate=0.5, flag=True, sizes=(3, 4)), True)
    assert field_docs(ToyConfig)["width"].startswith("Width of the toy.")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--width", "0"], "field 'width' must be >= 1"), (["--width", "x"], "Invalid value for '--width'"), (["--sizes", "[1,"], "not valid JSON")],
)
def test_bad_values_are_refused_naming_the_field(arguments, message):
    result = runner.invoke(_app([]), ["toy", "--name", "a", *arguments])
    assert result.exit_code == 2 and message in result.output


def test_train_simulator_exposes_every_simulator_config_field():
    from recsim_env.cli import build_app
    from simulators.config import SimulatorConfig

    result = runner.invoke(build_app(), ["train-simulator", "--help"], terminal_width=300)
    assert result.exit_code == 0
    for field in dataclasses.fields(SimulatorConfig):
        assert f"--{field.name.replace('_', '-')}" in result.output, field.name
