"""The settings registry (settings.py) as Typer options: one `--flag` per setting, help and range included.

`with_setting_options(func)` gives a command one option per registry setting, after its first two
parameters; the command receives them as one dict, `settings` (setting name -> value, None where not
given), ready for `settings.resolve_settings`.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from enum import Enum
from typing import Annotated, Any

import typer

from charrnn.settings import SETTINGS, Setting

_PARAM = inspect.Parameter.POSITIONAL_OR_KEYWORD


def check_number(value: Any, ok: bool, message: str) -> Any:
    """Range checks Typer's min/max cannot express (open intervals, NaN); shown in Typer's usage box."""
    if value is not None and (not math.isfinite(value) or not ok):
        raise typer.BadParameter(f"{value} {message}")
    return value


def _choices(setting: Setting) -> type[Enum]:
    return Enum(setting.name, {c.replace("-", "_"): c for c in setting.choices}, type=str)


def _callback(setting: Setting):
    if setting.text or setting.kind not in (int, float) or (setting.kind is int and setting.valid is None):
        return None
    valid, message = setting.valid, setting.requirement or "must be a finite number"
    return lambda v: check_number(v, v is None or valid is None or valid(v), message)


def setting_parameter(setting: Setting) -> inspect.Parameter:
    """The Typer option of one setting (not given: None; a boolean flag: False)."""
    names = (setting.flag, setting.short) if setting.short else (setting.flag,)
    if setting.kind is bool:
        option = typer.Option(*names, help=setting.help_text())
        return inspect.Parameter(setting.name, _PARAM, default=False, annotation=Annotated[bool, option])
    kind = _choices(setting) if setting.choices is not None else (str if setting.text else setting.kind)
    bounds = {} if setting.text else {"min": setting.low, "max": setting.high}
    option = typer.Option(
        *names,
        help=setting.help_text(),
        callback=_callback(setting),
        **{k: v for k, v in bounds.items() if v is not None},
    )
    return inspect.Parameter(setting.name, _PARAM, default=None, annotation=Annotated[kind | None, option])


def with_setting_options(func):
    """Add the registry's options to a Typer command; it receives them as `settings`."""
    hints = typing.get_type_hints(func, include_extras=True)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(func).parameters.values()
        if p.name != "settings"
    ]
    added = [setting_parameter(s) for s in SETTINGS]
    parameters = own[:2] + added + own[2:]

    @functools.wraps(func)
    def command(**kwargs):
        settings = {}
        for s in SETTINGS:
            value = kwargs.pop(s.name)
            # an enumeration's value is its text; a boolean flag that was not passed is "not given"
            settings[s.name] = value.value if isinstance(value, Enum) else (None if value is False else value)
        return func(settings=settings, **kwargs)

    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command
