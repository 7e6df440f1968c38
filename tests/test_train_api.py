"""charrnn.train_api.train: the command line's training from Python, with its options, defaults and checks."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import os
import signal

import pytest
import torch
from typer.testing import CliRunner

from charrnn import session
from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.errors import BadSetting, CharrnnError
from charrnn.session import TrainRequest
from charrnn.train import StepReport
from charrnn.train_api import option_names, train
from conftest import SMALL_TEXT

# conftest.TINY_TRAIN_FLAGS as Python values, with a time budget that the 30 steps end long before
TINY = dict(
    hidden=32,
    layers=1,
    embedding=16,
    batch_size=4,
    seq_len=16,
    max_steps=30,
    eval_every=10,
    dropout=0,
    seed=7,
    max_time=300,
)
TINY_FLAGS = [
    "--hidden", "32", "--layers", "1", "--embedding", "16", "--batch-size", "4", "--seq-len", "16",
    "--max-steps", "30", "--eval-every", "10", "--dropout", "0", "--seed", "7", "--max-time", "5m", "--quiet",
]  # fmt: skip


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).weights


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "small.txt"
    path.write_text(SMALL_TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def python_run(text, tmp_path_factory):
    """One 30-step run through train(), quiet."""
    out = tmp_path_factory.mktemp("py") / "run"
    return train(text, out=out, quiet=True, **TINY), out


def test_returns_the_trainers_result(python_run):
    result, out = python_run
    assert result.stopped_by == "limit"
    assert result.run_dir == out and result.progress.step == TINY["max_steps"]
    assert {"best.pt", "last.pt", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    assert (
        result.final_score is not None and result.final_score.nats == result.progress.history[-1]["val_loss"]
    )
    assert result.chars_per_sec > 0
    blob = load_checkpoint(out / "last.pt")
    assert blob.progress.step == 30 and blob.train_config.max_time == 300.0
    assert blob.model_config.hidden == 32 and blob.train_config.seed == 7


def test_the_same_options_through_the_command_line_train_the_same_weights(python_run, text, tmp_path):
    result, out = python_run
    cli = CliRunner().invoke(app, ["train", str(text), "--out", str(tmp_path / "cli"), *TINY_FLAGS])
    assert cli.exit_code == 0, cli.output
    assert same_weights(out / "last.pt", tmp_path / "cli" / "last.pt")
    losses = [(m["step"], m["train_loss"], m["val_loss"]) for m in result.progress.history]
    cli_history = load_checkpoint(tmp_path / "cli" / "last.pt").progress.history
    assert [(m["step"], m["train_loss"], m["val_loss"]) for m in cli_history] == losses


def test_progress_and_summary_go_to_stderr_unless_quiet(text, tmp_path, capsys):
    small = {**TINY, "max_steps": 10}
    train(text, out=tmp_path / "loud", **small)
    loud = capsys.readouterr()
    assert loud.out == "" and "training finished" in loud.err and "lstm 1x32" in loud.err
    train(text, out=tmp_path / "quiet", quiet=True, **small)
    assert capsys.readouterr() == ("", "")


def test_resume_continues_exactly(python_run, text, tmp_path):
    out = tmp_path / "run"
    first = train(
        text, out=out, quiet=True, **{**TINY, "max_steps": 20, "max_time": datetime.timedelta(minutes=5)}
    )
    assert first.progress.step == 20 and load_checkpoint(out / "last.pt").train_config.max_time == 300.0
    more = train(text, resume=out, max_steps=30, quiet=True)
    assert more.stopped_by == "limit" and more.progress.step == 30 and more.run_dir == out
    assert same_weights(out / "last.pt", python_run[1] / "last.pt")  # as if never stopped


def test_resume_refusals_name_the_setting(python_run, text):
    out = python_run[1]
    with pytest.raises(BadSetting) as e:
        train(text, resume=out / "last.pt", hidden=64, quiet=True)
    assert e.value.setting == "hidden" and str(e.value).startswith(
        "hidden 64 contradicts the checkpoint (hidden 32)"
    )
    with pytest.raises(BadSetting) as e:
        train(text, resume=out, level="byte", quiet=True)
    assert e.value.setting == "level" and str(e.value).startswith(
        "level byte contradicts the checkpoint (level char)"
    )
    with pytest.raises(CharrnnError, match="already reached its limits"):
        train(text, resume=out, quiet=True)
    with pytest.raises(CharrnnError, match="already holds a run"):
        train(text, out=out, quiet=True, **TINY)


@pytest.mark.parametrize(
    "name, expected",
    [("hiden", "hidden"), ("max_step", "max_steps"), ("batchsize", "batch_size"), ("overwite", "overwrite")],
)
def test_an_unknown_option_is_named_with_the_closest_valid_ones(name, expected, tmp_path):
    with pytest.raises(BadSetting) as e:
        train(tmp_path / "not-read.txt", out=tmp_path / "run", **{name: 1})
    message = str(e.value)
    assert e.value.setting == name and message.startswith(f"{name!r} is not an option of train")
    assert f"did you mean {expected}" in message and "{setting:" not in message
    assert not (tmp_path / "run").exists()


def test_an_unknown_option_like_none_is_named_alone(tmp_path):
    with pytest.raises(BadSetting, match=r"^'xyzzy' is not an option of train \(the options"):
        train(tmp_path / "not-read.txt", xyzzy=1)


@pytest.mark.parametrize(
    "options, setting, start",
    [
        ({"hidden": 0}, "hidden", "hidden 0 is not in the range"),
        ({"layers": 2.5}, "layers", "layers 2.5 must be a whole number"),
        ({"dropout": 1.0}, "dropout", "dropout 1.0 must be at least 0 and below 1"),
        ({"lr": 0}, "lr", "lr 0.0 must be above 0"),
        ({"cell": "transformer"}, "cell", "cell 'transformer': choose one of"),
        ({"max_time": "ten minutes"}, "max_time", "max_time 'ten minutes' is not a duration"),
        ({"max_time": -5}, "max_time", "max_time -5 must be a finite duration above zero"),
        ({"scheduled_sampling": 2}, "scheduled_sampling", "scheduled_sampling"),
        ({"level": "word"}, "level", "level 'word': choose char or byte"),
        ({"backend": "mpi"}, "backend", "backend 'mpi': choose auto, gloo or nccl"),
        ({"level": "byte", "lossy": True}, "lossy", "--lossy has no effect"),
        ({"include": 5}, "include", "include must be a glob or a list of globs"),
        ({"overwrite": "yes"}, "overwrite", "overwrite must be True or False"),
        ({"out": 3}, "out", "out must be a path"),
    ],
)
def test_a_bad_value_is_refused_before_anything_is_read(options, setting, start, tmp_path):
    with pytest.raises(BadSetting) as e:
        train(tmp_path / "not-read.txt", **options)  # the corpus does not exist: never reached
    assert e.value.setting == setting and str(e.value).startswith(start), str(e.value)


def test_ctrl_c_stops_saves_last_pt_and_leaves_the_callers_handler(text, tmp_path, monkeypatch):
    view = session.TrainingView.__call__

    def interrupt_at_first_report(self, event):
        if isinstance(event, StepReport) and not getattr(self, "sent", False):
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C in the terminal
        view(self, event)

    monkeypatch.setattr(session.TrainingView, "__call__", interrupt_at_first_report)
    before = signal.getsignal(signal.SIGINT)
    result = train(text, out=tmp_path / "run", quiet=True, **{**TINY, "max_steps": 100_000})
    assert result.stopped_by == "signal:SIGINT" and 0 < result.progress.step < 100_000
    assert load_checkpoint(tmp_path / "run" / "last.pt").progress.step == result.progress.step
    assert signal.getsignal(signal.SIGINT) is before


def test_the_options_are_the_command_lines():
    """train's own keywords are TrainRequest's fields with its defaults; the rest is the registry."""
    own = {
        p.name: p.default for p in inspect.signature(train).parameters.values() if p.kind is p.KEYWORD_ONLY
    }
    request = {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(TrainRequest)
        if f.name not in ("corpus", "settings")
    }
    assert own.keys() == request.keys()
    assert all(own[k] == request[k] or (list(own[k]) == request[k] == []) for k in own)
    assert set(option_names()) == set(own) | set(session.BY_NAME)


def test_a_non_finite_time_budget_is_refused_and_a_number_is_a_schedule():
    from charrnn.settings import check_given

    for value in (float("nan"), float("inf"), -1.0):
        with pytest.raises(BadSetting, match="max_time"):
            check_given({"max_time": value})
    assert check_given({"scheduled_sampling": 0.2}) == {"scheduled_sampling": [0.2, 0.2]}
