"""Training from Python: `train(corpus, **options)` runs what `charrnn train CORPUS ...` runs.

The options are the command line's, with underscores (`max_time`, `batch_size`, ...), and the same
defaults; the run goes through the CLI's own path (session.train_session), so settings are resolved and
checked by settings.py exactly as for the command line. Problems are raised as CharrnnError; a run that
diverges or is stopped by a signal returns its result with `stopped_by` saying so.

    from charrnn.train_api import train

    result = train("README.md", out="runs/readme", hidden=128, max_time="2m", seed=1)
    print(result.stopped_by, result.progress.step, result.progress.best_val)
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import inspect
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from charrnn.corpus import check_level
from charrnn.distributed import BACKENDS
from charrnn.errors import BadInput, BadSetting, setting_ref
from charrnn.session import TrainRequest, train_session
from charrnn.settings import BY_NAME, check_given
from charrnn.train import TrainResult
from charrnn.vocab import LEVELS

PathArg = str | os.PathLike[str]


def train(
    corpus: PathArg,
    *,
    out: PathArg | None = None,
    resume: PathArg | None = None,
    init: PathArg | None = None,
    overwrite: bool = False,
    encoding: str | None = None,
    lossy: bool = False,
    level: str | None = None,
    include: str | Iterable[str] = (),
    exclude: str | Iterable[str] = (),
    backend: str = "auto",
    quiet: bool = False,
    **settings: Any,
) -> TrainResult:
    """Train a character model on `corpus` as `charrnn train CORPUS` does and return the trainer's result.

    `corpus` is what the command line takes: a text file, "-" (stdin), a folder, a glob or a named corpus.
    The keyword options are `charrnn train`'s (`out` defaults to checkpoints/<corpus name>; `include` and
    `exclude` take a glob or a list of them), and `**settings` every setting of charrnn.settings.SETTINGS
    (hidden=128, max_steps=500, cell="gru", ...; None: not given). `max_time` takes a duration as the
    command line writes it ("90s", "10m", "1h30m"), seconds as a number, or a `datetime.timedelta`;
    `scheduled_sampling` a rate, "START:END" or a (start, end) pair. `init` fine-tunes: a checkpoint, a
    run folder or a bundled model's name ("base") to start from.

    Progress, notes and the summary go to stderr, as from the command line; with quiet=True nothing is
    printed. A bad or unknown option raises charrnn.errors.BadSetting naming it (`error.setting`); every
    other expected problem a CharrnnError. A run that diverges or is stopped by SIGINT/SIGTERM (Ctrl-C
    finishes the step and saves last.pt) returns with `stopped_by` "diverged" or "signal:SIGINT"; resume it
    with `resume=run_dir`.
    """
    _check_names(settings)
    request = TrainRequest(
        corpus=_corpus(corpus),
        out=_path("out", out),
        resume=_path("resume", resume),
        init=str(_path("init", init)) if init is not None else None,
        overwrite=_flag("overwrite", overwrite),
        encoding=_text("encoding", encoding),
        lossy=_flag("lossy", lossy),
        level=_choice("level", level, LEVELS),
        include=_globs("include", include),
        exclude=_globs("exclude", exclude),
        backend=_choice("backend", backend, BACKENDS),
        quiet=_flag("quiet", quiet),
        settings=_python_values(settings),
    )
    if request.level is not None:
        try:
            check_level(request.level, request.encoding, request.lossy)  # byte with an encoding or lossy
        except BadSetting as e:
            e.setting = e.setting or ("encoding" if request.encoding is not None else "lossy")
            raise
    for name, value in request.settings.items():  # at once, before a checkpoint or the corpus is read
        try:
            check_given({name: value})
        except BadSetting as e:
            e.setting = e.setting or name  # (a few parsers' errors do not say it)
            raise
    console = Console(stderr=True, highlight=False, quiet=request.quiet)
    with _signal_handlers_kept():
        return train_session(request, console).result


def option_names() -> list[str]:
    """Every keyword `train` takes: its own options, then the settings of the registry."""
    own = [p for p in inspect.signature(train).parameters.values() if p.kind is p.KEYWORD_ONLY]
    return [p.name for p in own] + list(BY_NAME)


def _check_names(settings: dict[str, Any]) -> None:
    for name in settings:
        if name not in BY_NAME:
            close = difflib.get_close_matches(name, option_names(), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(setting_ref(c) for c in close)}?" if close else ""
            raise BadSetting(
                f"{name!r} is not an option of train{hint} (the options: charrnn.train_api.option_names())",
                setting=name,
            )


def _python_values(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with the Python forms check_given does not take turned into the command line's."""
    out = dict(settings)
    if isinstance(out.get("max_time"), datetime.timedelta):
        out["max_time"] = out["max_time"].total_seconds()
    rate = out.get("scheduled_sampling")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        out["scheduled_sampling"] = str(rate)
    return out


def _corpus(corpus: Any) -> str:
    if not isinstance(corpus, str | os.PathLike):
        raise BadInput(
            f"the corpus must be a path or a name (str or os.PathLike), not {type(corpus).__name__}"
        )
    return os.fspath(corpus)


def _path(name: str, value: Any) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise BadSetting(
            f"{setting_ref(name)} must be a path (str or os.PathLike), not {value!r}", setting=name
        )
    return Path(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadSetting(f"{setting_ref(name)} must be True or False, not {value!r}", setting=name)
    return value


def _text(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadSetting(f"{setting_ref(name)} must be text or None, not {value!r}", setting=name)
    return value


def _globs(name: str, value: Any) -> list[str]:
    globs = [value] if isinstance(value, str) else list(value) if isinstance(value, Iterable) else None
    if globs is None or not all(isinstance(g, str) for g in globs):
        raise BadSetting(
            f"{setting_ref(name)} must be a glob or a list of globs, not {value!r}", setting=name
        )
    return globs


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> Any:
    if value is not None and value not in choices:
        listed = f"{', '.join(choices[:-1])} or {choices[-1]}"
        raise BadSetting(f"{setting_ref(name)} {value!r}: choose {listed}", setting=name)
    return value


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """The caller's SIGINT/SIGTERM handlers again afterwards: the Trainer restores them itself, except in a
    distributed run, where it keeps its own for the process's end that the command line comes to at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)
