"""Command-line options generated from a config dataclass, so no command re-declares a field.

    @config_options(SimulatorConfig, aliases={"learning_rate": ("--lr",)})
    def train_simulator_command(data: ..., out: ..., config: SimulatorConfig) -> None: ...

The command gets one option per field (`--field-name`, its type and default, the first sentence of the
field's docstring as help); typer sees the generated signature. When the command runs, the options
are collected into the dataclass (its `__post_init__` validates them, as for any caller) and passed
as the `config` argument. Fields typed as tuples, lists or mappings take JSON.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

from recsim_env.errors import ArgumentError


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal under each field)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _option_type(hint: Any) -> tuple[Any, bool]:
    """(the type typer parses, whether the value is JSON text to decode)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            inner, is_json = _option_type(rest[0])
            return inner | None, is_json
    if hint in (int, float, str, bool):
        return hint, False
    return str | None, True  # tuples, lists, mappings: JSON


def config_options(
    cls: type,
    *,
    param: str = "config",
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    exclude: tuple[str, ...] = (),
) -> Callable[[Callable], Callable]:
    """Decorate a command taking `param: cls` so that every field of `cls` becomes an option."""
    aliases = dict(aliases or {})
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init and f.name not in exclude]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != param]
        own_names = {p.name for p in own}
        clash = sorted(own_names & {f.name for f in fields})
        if clash:
            raise TypeError(f"{command.__name__}: parameters {clash} are also {cls.__name__} fields")
        generated, decode = [], {}
        for f in fields:
            typ, is_json = _option_type(hints[f.name])
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if is_json:
                decode[f.name] = default
                default = None
            names = (f"--{f.name.replace('_', '-')}", *aliases.get(f.name, ()))
            if typ is bool:
                names = (f"{names[0]}/--no-{f.name.replace('_', '-')}", *names[1:])
            help_text = _first_sentence(docs.get(f.name, "")) + (" (JSON)" if is_json else "")
            annotation = Annotated[typ, typer.Option(*names, help=help_text, show_default=not is_json)]
            generated.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
            )

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in fields if f.name in kwargs}
            for name, default in decode.items():
                text = values.get(name)
                if text is None:
                    values[name] = default
                    continue
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError as error:
                    raise typer.BadParameter(
                        f"not valid JSON ({error})", param_hint=f"--{name.replace('_', '-')}"
                    ) from None
                values[name] = tuple(parsed) if isinstance(parsed, list) else parsed
            try:
                config = cls(**values)
            except (TypeError, ValueError, ArgumentError) as error:
                typer.echo(f"error: {error}", err=True)
                raise typer.Exit(code=2) from None
            return command(*args, **{param: config}, **kwargs)

        ordered = [p for p in own if p.default is inspect.Parameter.empty] + [
            p for p in own if p.default is not inspect.Parameter.empty
        ]
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in ordered] + generated
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__  # typer must read the generated signature, not the command's
        return wrapper

    return decorate


def given_options(context: typer.Context, cls: type) -> set[str]:
    """The fields of `cls` given on the command line of `context`'s command (not left at their defaults)."""
    given = set()
    for f in dataclasses.fields(cls):
        source = context.get_parameter_source(f.name)
        if source is not None and source.name != "DEFAULT":
            given.add(f.name)
    return given
