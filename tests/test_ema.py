"""--ema: the moving average is scored beside the weights, saved as best.pt when better, resumed exactly."""

from __future__ import annotations

import math

import torch
from typer.testing import CliRunner

from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.cli import app
from charrnn.corpus import load_corpus
from charrnn.evaluate import score_ids
from charrnn.jsonl import read_records
from conftest import TINY_TRAIN_FLAGS

runner = CliRunner()


def train(*args):
    result = runner.invoke(app, ["train", *[str(a) for a in args]])
    assert result.exit_code == 0, result.output
    return result


def flags(max_steps: int) -> list[str]:
    out = list(TINY_TRAIN_FLAGS)
    out[out.index("--max-steps") + 1] = str(max_steps)
    return out


def test_the_average_is_scored_logged_and_kept_apart_from_the_weights(tmp_path, small_text_file):
    run = tmp_path / "run"
    # fp32: the scores logged in training and score_ids below then use the same arithmetic (under bf16
    # autocast, which --precision auto picks on CPUs with bf16, the two differ by about 2e-4 nats here)
    train(small_text_file, "--out", run, *flags(60), "--ema", "0.9", "--lr", "0.01", "--precision", "fp32")
    metrics = read_records(run / "metrics.jsonl")
    assert all(math.isfinite(m["val_loss_ema"]) for m in metrics)
    last = load_checkpoint(run / "last.pt")
    names = [n for n, _ in model_from_checkpoint(last)[0].named_parameters()]
    assert len(last.training.ema) == len(names)
    assert any(not torch.equal(e, last.weights[n]) for e, n in zip(last.training.ema, names, strict=True))
    best = load_checkpoint(run / "best.pt")
    best_logged = min(min(m["val_loss"], m["val_loss_ema"]) for m in metrics)
    assert best.progress.best_val == best_logged
    model, _ = model_from_checkpoint(best)  # best.pt scores as logged, average or not
    _, val = load_corpus(small_text_file).split(0.1)
    assert abs(score_ids(model, val).nats - best_logged) < 1e-4
    plain = tmp_path / "plain"
    train(small_text_file, "--out", plain, *flags(20))
    assert load_checkpoint(plain / "last.pt").training.ema is None
    assert "val_loss_ema" not in read_records(plain / "metrics.jsonl")[0]


def test_a_resumed_run_continues_the_same_average(tmp_path, small_text_file):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(small_text_file, "--out", whole, *flags(40), "--ema", "0.95")
    train(small_text_file, "--out", parts, *flags(20), "--ema", "0.95")
    train(small_text_file, "--resume", parts, "--max-steps", "40", "--quiet")
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(parts / "last.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.training.ema, b.training.ema, strict=True))
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_ema_added_on_resume_starts_from_the_resumed_weights(tmp_path, small_text_file):
    run = tmp_path / "run"
    train(small_text_file, "--out", run, *flags(20))
    before = load_checkpoint(run / "last.pt").weights
    train(small_text_file, "--resume", run, "--max-steps", "21", "--ema", "0.999", "--quiet")
    after = load_checkpoint(run / "last.pt")
    names = [n for n, _ in model_from_checkpoint(after)[0].named_parameters()]
    # one step after the resume, the average sits between the resumed and the new weights, near the former
    for e, n in zip(after.training.ema, names, strict=True):
        assert (e - before[n]).abs().max() <= (after.weights[n] - before[n]).abs().max() + 1e-7
