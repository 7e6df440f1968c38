"""train --sample-every: samples above the progress bar and in samples.jsonl, without touching the run."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.jsonl import append_record, read_records
from conftest import TINY_TRAIN_FLAGS

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def flags(**changes) -> list[str]:
    """TINY_TRAIN_FLAGS with some values replaced (and --quiet dropped when quiet=False)."""
    out = list(TINY_TRAIN_FLAGS)
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        if flag == "--quiet":
            out = [f for f in out if f != "--quiet"] + (["--quiet"] if value else [])
        else:
            out[out.index(flag) + 1] = str(value)
    return out


def test_samples_are_shown_saved_and_leave_the_training_untouched(tmp_path, small_text_file):
    plain = invoke("train", small_text_file, "--out", tmp_path / "plain", *TINY_TRAIN_FLAGS)
    live = invoke(
        "train", small_text_file, "--out", tmp_path / "live", *flags(quiet=False),
        "--sample-every", "1", "--sample-length", "25", "--sample-temperature", "0.5",
    )  # fmt: skip
    assert plain.exit_code == 0 and live.exit_code == 0, live.output
    assert live.stdout == ""  # samples are progress, not results
    records = read_records(tmp_path / "live" / "samples.jsonl")
    assert [r["step"] for r in records] == [10, 20, 30]  # one per evaluation (every 10 steps)
    assert all(len(r["text"]) == 25 and r["temperature"] == 0.5 for r in records)
    metrics = read_records(tmp_path / "live" / "metrics.jsonl")
    assert [r["val_loss"] for r in records] == [m["val_loss"] for m in metrics]
    for r in records:
        assert f"--- sample at step {r['step']}, val {r['val_loss']:.3f} (temperature 0.5) ---" in live.stderr
        assert r["text"] in live.stderr
    # the samples draw from their own generator: the weights match a run without them, bit for bit
    a = load_checkpoint(tmp_path / "plain" / "last.pt").weights
    b = load_checkpoint(tmp_path / "live" / "last.pt").weights
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_nth_evaluation_and_quiet(tmp_path, small_text_file):
    quiet = invoke(
        "train", small_text_file, "--out", tmp_path / "q", *TINY_TRAIN_FLAGS, "--sample-every", "2",
        "--sample-length", "10",
    )  # fmt: skip
    assert quiet.exit_code == 0, quiet.output
    assert "sample at step" not in quiet.stderr  # --quiet: nothing shown ...
    assert [r["step"] for r in read_records(tmp_path / "q" / "samples.jsonl")] == [20]  # ... still saved
    none = invoke("train", small_text_file, "--out", tmp_path / "n", *TINY_TRAIN_FLAGS)
    assert none.exit_code == 0 and not (tmp_path / "n" / "samples.jsonl").exists()


def test_resume_drops_samples_past_the_checkpoint_and_goes_on(tmp_path, small_text_file):
    run = tmp_path / "run"
    first = invoke("train", small_text_file, "--out", run, *flags(max_steps=20), "--sample-every", "1")
    assert first.exit_code == 0, first.output
    # a run killed after sampling at step 30 but before saving it leaves a record the checkpoint lacks
    append_record(run / "samples.jsonl", {"step": 30, "val_loss": 1.0, "temperature": 0.8, "text": "ghost"})
    again = invoke("train", small_text_file, "--resume", run, "--max-steps", "30", "--quiet")
    assert again.exit_code == 0, again.output
    records = read_records(run / "samples.jsonl")
    # the resumed run kept --sample-every from the checkpoint and sampled at step 30 itself
    assert [r["step"] for r in records] == [10, 20, 30] and records[-1]["text"] != "ghost"
