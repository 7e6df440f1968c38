"""The exceptions charrnn raises for problems a user can fix, by kind, each naming the setting it is about.

Callers decide by type, never by the text: the CLI turns any `CharrnnError` into one line and exit status
1, and a server would answer a `BadInput` or `BadSetting` with a 400 and a `MissingResource` with a 503.

A message names settings with `setting_ref("max_time")` markers; `str(error)` shows the bare setting name
(`max_time`), for Python users, and `error.render(namer)` lets a front end show its own name for it (the
CLI's `--max-time`, a JSON field).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_MARKER = re.compile(r"\{setting:([a-z][a-z0-9_]*)\}")


def setting_ref(name: str) -> str:
    """A marker for setting `name` inside a message, shown by each front end in its own words."""
    return "{setting:" + name + "}"


class CharrnnError(Exception):
    """A problem with the user's input or environment, phrased so the user can fix it.

    `setting` is the setting (a field of ModelConfig or TrainConfig, or another option's name) the problem
    is about, or None."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.message = message
        self.setting = setting

    def render(self, namer: Callable[[str], str] = lambda name: name) -> str:
        """The message with every setting named by `namer` (the CLI passes setting -> flag)."""
        return _MARKER.sub(lambda m: namer(m[1]), self.message)

    def __str__(self) -> str:
        return self.render()


class BadInput(CharrnnError):
    """A text, prime, file or stream that cannot be used as given (not text, empty, unknown characters)."""


class BadSetting(CharrnnError):
    """A setting out of range, a combination that cannot be built, or one a resume may not change."""


class BadCheckpoint(CharrnnError):
    """A checkpoint that is missing, damaged, foreign, of an unknown version, or not resumable."""


class MissingResource(CharrnnError):
    """Something the job needs and the machine lacks: memory, disk space, a device, the network."""


class OutOfMemory(MissingResource):
    """The job would not fit in the memory of the device it runs on."""


class NoSpace(MissingResource):
    """A copy or a write would fill the disk (or the disk is full)."""
