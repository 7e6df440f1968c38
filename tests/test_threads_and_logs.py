"""`--threads` on train, sample and evaluate; plain progress lines when stderr is not a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import torch
from typer.testing import CliRunner

from charrnn import session
from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.session import TrainingView
from charrnn.train import StepReport
from conftest import TINY_TRAIN_FLAGS

runner = CliRunner()


def test_threads_are_applied_shown_and_recorded(tmp_path, small_text_file):
    result = runner.invoke(
        app, ["train", str(small_text_file), "--out", str(tmp_path / "r"), "--threads", "1",
              *[f for f in TINY_TRAIN_FLAGS if f != "--quiet"]],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ", 1 thread;" in result.stderr
    assert torch.get_num_threads() == 1
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(r["threads"] == 1 for r in records)
    ckpt = load_checkpoint(tmp_path / "r")
    assert ckpt.train_config.threads == 1
    info = json.loads(runner.invoke(app, ["info", str(tmp_path / "r"), "--json"]).stdout)
    assert "--threads" in info["flags"] and info["flags"][info["flags"].index("--threads") + 1] == "1"
    torch.set_num_threads(2)
    sampled = runner.invoke(app, ["sample", str(tmp_path / "r"), "--threads", "1", "--length", "20"])
    assert sampled.exit_code == 0 and torch.get_num_threads() == 1
    scored = runner.invoke(app, ["evaluate", str(tmp_path / "r"), str(small_text_file), "--threads", "1"])
    assert scored.exit_code == 0, scored.output


def test_zero_or_negative_threads_are_usage_errors(tmp_path, small_text_file):
    for value in ("0", "-1"):
        for command in (["train", str(small_text_file)], ["sample", str(tmp_path)]):
            result = runner.invoke(app, [*command, "--threads", value])
            assert result.exit_code == 2, result.output
            assert "--threads" in result.output


def test_more_threads_than_cores_are_allowed_with_a_note(tmp_path, small_text_file):
    many = (os.cpu_count() or 1) + 1
    result = runner.invoke(
        app, ["train", str(small_text_file), "--out", str(tmp_path / "r"), "--threads", str(many),
              *[f for f in TINY_TRAIN_FLAGS if f != "--quiet"]],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"--threads {many} is more than this machine's" in result.stderr
    assert f", {many} threads;" in result.stderr


def _report(step: int, evaluated: bool = False) -> StepReport:
    return StepReport(step / 100, step, 1.5, 1.4 if evaluated else float("inf"), 1000.0, evaluated)


def test_plain_lines_come_at_each_evaluation_and_at_most_every_30_seconds(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(session.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    view = TrainingView(quiet=False, plain=True, stream=out)
    for step in range(1, 50):  # 49 reports within a second: only the first is printed
        view(_report(step))
        clock[0] += 0.02
    view(_report(50, evaluated=True))  # an evaluation is always printed
    clock[0] += 31
    view(_report(60))  # 30 seconds on: one more
    view(_report(61))
    lines = out.getvalue().splitlines()
    assert [line.split(" ")[1] for line in lines] == ["1", "50", "60"]
    assert "best val 1.400" in lines[1] and "[evaluated]" in lines[1] and "left" in lines[1]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_run_with_stderr_to_a_file_writes_plain_lines(tmp_path, small_text_file):
    log = tmp_path / "train.log"
    flags = [f for f in TINY_TRAIN_FLAGS if f != "--quiet"]
    with open(log, "wb") as stderr:
        command = [
            sys.executable,
            "-m",
            "charrnn",
            "train",
            str(small_text_file),
            "--out",
            str(tmp_path / "r"),
        ]
        done = subprocess.run(
            [*command, *flags], stderr=stderr, stdout=subprocess.DEVNULL, timeout=300, check=False
        )
    data = log.read_bytes()
    assert done.returncode == 0, data.decode(errors="replace")
    assert b"\r" not in data and b"\x1b" not in data
    progress = [line for line in data.decode().splitlines() if line.startswith("step ")]
    evaluations = 3  # 30 steps, an evaluation every 10
    assert 1 <= len(progress) <= evaluations + 2
    assert sum("[evaluated]" in line for line in progress) == evaluations
