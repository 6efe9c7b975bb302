"""The `seqrec` command. Each package contributes its commands through the entry-point group
`seqrec.commands` (see pyproject.toml), so this root app imports no package above `recsim_env`."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

ENTRY_POINT_GROUP = "seqrec.commands"


def build_app() -> typer.Typer:
    """The root app with every discovered command: a `typer.Typer` becomes a group, a function a command."""
    app = typer.Typer(
        help="recsim-env: environments, simulators, agents and off-policy evaluation for recommendation.",
        no_args_is_help=True,
        add_completion=False,
    )
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            target = entry_point.load()
        except Exception as error:  # a broken plugin must not take the other commands down
            print(f"seqrec: skipping command {entry_point.name!r}: {error}", file=sys.stderr)
            continue
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=entry_point.name)
        else:
            app.command(name=entry_point.name)(target)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
