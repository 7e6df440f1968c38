"""The foundations of issue 21: the settings registry, resolve_settings, typed errors, the run folder, and
the Trainer from Python (its default limit and its lock)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import DEFAULT_MAX_TIME, TrainConfig
from charrnn.corpus import load_corpus
from charrnn.errors import BadSetting, CharrnnError, OutOfMemory, setting_ref
from charrnn.model import ModelConfig
from charrnn.runfolder import RunFolder
from charrnn.runlock import run_lock
from charrnn.settings import SETTINGS, resolve_settings
from charrnn.train import Trainer
from conftest import TINY_TRAIN_FLAGS

runner = CliRunner()
README = Path(__file__).resolve().parent.parent / "README.md"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# ---- the registry ---------------------------------------------------------------------------------------
def test_every_setting_is_a_config_field_and_a_train_flag():
    names = {f.name for f in fields(ModelConfig)} | {f.name for f in fields(TrainConfig)}
    assert all(s.name in names for s in SETTINGS)
    help_text = re.sub(r"\s+", " ", invoke("train", "--help").output)
    for setting in SETTINGS:
        assert setting.flag in help_text, setting.flag
    assert (
        "[default: 16]" in help_text.replace("│", "") or "16]" in help_text
    )  # batch size from the dataclass


def test_the_dataclass_defaults_are_what_a_default_run_gets():
    """A default run: 10 minutes on a corpus of 200,000 characters or more."""
    settings = resolve_settings(1_000_000, 65)
    for setting in SETTINGS:
        value = getattr(settings.model if setting.scope == "model" else settings.train, setting.name)
        if setting.name == "max_time":
            assert value == DEFAULT_MAX_TIME
        else:
            assert value == setting.default_value(), setting.name


def test_resolve_settings_applies_the_automatic_choices_from_python():
    small = resolve_settings(50_000, 30, max_time="2m")  # a small corpus
    assert small.model.hidden == 256 and small.model.dropout == 0.3 and small.train.max_time == 120
    long = resolve_settings(5_000_000, 30, max_time=1800, hidden=640)
    assert long.model.hidden == 640 and long.train.weight_decay == 0.2 and long.model.dropout == 0.3
    assert resolve_settings(5_000_000, 30, max_steps=10).train.max_time is None  # a limit was given


@pytest.mark.parametrize(
    "given, setting",
    [
        ({"hidden": 0}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"cell": "transformer"}, "cell"),
        ({"lr": float("nan")}, "lr"),
        ({"max_time": "ten minutes"}, "max_time"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_bad_settings_from_python_name_the_setting(given, setting):
    with pytest.raises(BadSetting) as caught:
        resolve_settings(100_000, 30, given)
    assert caught.value.setting == setting
    assert setting in str(caught.value) and "--" not in str(caught.value).split(";")[0]


def test_errors_render_settings_as_each_front_end_names_them():
    error = BadSetting(f"{setting_ref('max_time')} 'x' is not a duration", setting="max_time")
    assert str(error) == "max_time 'x' is not a duration"
    assert error.render(lambda name: "--" + name.replace("_", "-")) == "--max-time 'x' is not a duration"
    assert isinstance(OutOfMemory("x"), CharrnnError)


def test_a_resume_rule_comes_from_the_registry(tmp_path, small_text_file):
    out = tmp_path / "run"
    assert invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS).exit_code == 0
    refused = invoke("train", small_text_file, "--resume", out, "--seq-len", "32", "--max-steps", "40")
    assert refused.exit_code == 1
    assert "--seq-len 32 contradicts the checkpoint (--seq-len 16)" in refused.output
    changed = invoke("train", small_text_file, "--resume", out, "--lr", "0.001", "--max-steps", "32")
    assert changed.exit_code == 0 and "changed on resume: --lr 0.004 -> 0.001" in changed.output


# ---- the run folder --------------------------------------------------------------------------------------
def test_overwrite_removes_every_file_of_the_old_run(tmp_path, small_text_file):
    """Defect 3: --overwrite left samples.jsonl, so a fresh run appended to the old run's samples."""
    out = tmp_path / "run"
    flags = [*TINY_TRAIN_FLAGS, "--sample-every", "1", "--sample-length", "5", "--log-grad-norms"]
    assert invoke("train", small_text_file, "--out", out, *flags).exit_code == 0
    assert len((out / "samples.jsonl").read_text().splitlines()) == 3
    again = [*flags[: flags.index("--max-steps") + 1], "10", *flags[flags.index("--max-steps") + 2 :]]
    result = invoke("train", small_text_file, "--out", out, *again, "--overwrite")
    assert result.exit_code == 0, result.output
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [10]
    assert [json.loads(r)["step"] for r in (out / "grad_norms.jsonl").read_text().splitlines()] == [1, 10]


def test_run_folder_refuses_a_run_without_overwrite(tmp_path):
    folder = RunFolder(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(BadSetting, match="already holds a run"):
        folder.start_fresh(overwrite=False)
    (tmp_path / "samples.jsonl").write_text("{}\n")
    folder.start_fresh(overwrite=True)
    assert list(tmp_path.iterdir()) == []


# ---- the Trainer from Python ------------------------------------------------------------------------------
def test_a_trainer_from_python_gets_the_default_limit_and_holds_the_lock(tmp_path, small_text_file):
    """Defect 4: without a limit it trained until a signal, and it took no run lock."""
    corpus = load_corpus(str(small_text_file))
    model = ModelConfig(vocab_size=len(corpus.vocab), layers=1, hidden=16, embedding=8)
    trainer = Trainer(corpus, model, TrainConfig(batch_size=2, seq_len=8), tmp_path / "py")
    assert trainer.config.max_time == DEFAULT_MAX_TIME
    seen = []

    def try_the_lock(t: Trainer) -> None:
        with pytest.raises(CharrnnError, match="being trained by another process"), run_lock(t.run_dir):
            pass
        seen.append(t.progress.step)
        t.config.max_steps = 3  # end soon

    trainer.on_step = try_the_lock
    result = trainer.run()
    assert result.stopped_by == "limit" and seen[0] == 1 and result.progress.step == 3
    with run_lock(tmp_path / "py"):  # released once the run ends
        pass


def test_the_readme_python_section_runs_as_written(tmp_path, small_text_file):
    """Every ```python block of "Using it from Python", with a shorter budget, in a folder holding the files
    it names."""
    section = README.read_text().split("## Using it from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the README's Python section has no code"
    code = "\n".join(blocks).replace("max_steps=200", "max_steps=6")
    assert "max_steps=6" in code
    (tmp_path / "README.md").write_text(small_text_file.read_text() * 3)
    script = tmp_path / "script" / "readme_example.py"  # not in the working folder, whose charrnn/ it shadows
    script.parent.mkdir()
    script.write_text(code)
    done = subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("limit 6 ") and "kept " in done.stdout and "perplexity" in lines[-2]
