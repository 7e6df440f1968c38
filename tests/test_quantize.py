"""int8 one-step inference: close to float32 for every cell, scored exactly like generation, on the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.evaluate import score_ids
from charrnn.model import CharRNN, ModelConfig
from charrnn.quantize import Int8Stepper, SteppedModel, make_stepper
from charrnn.stepper import Stepper
from charrnn.vocab import Vocabulary
from conftest import SMALL_TEXT, TINY_TRAIN_FLAGS

runner = CliRunner()


def model_for(cell: str, vocab: Vocabulary) -> CharRNN:
    torch.manual_seed(3)
    return CharRNN(ModelConfig(len(vocab), cell=cell, layers=2, hidden=64, embedding=16)).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole-lstm"])
def test_int8_steps_stay_close_to_float32(cell):
    vocab = Vocabulary.from_text(SMALL_TEXT)
    model = model_for(cell, vocab)
    ids = vocab.encode(SMALL_TEXT[:60]).long()
    exact, int8 = Stepper(model), make_stepper(model, "int8")
    assert isinstance(int8, Int8Stepper)
    s_exact = exact.split_state(model.init_state(3, "cpu"))
    s_int8 = int8.split_state(model.init_state(3, "cpu"))
    worst = 0.0
    for t in range(ids.numel()):
        step_ids = ids[t].repeat(3)
        a, b = exact.step(step_ids, s_exact), int8.step(step_ids, s_int8)
        p, q = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
        worst = max(worst, float((p.exp() * (p - q)).sum(-1).max()))  # KL(float || int8) per step
    assert 0 < worst < 0.01  # int8 changes the numbers, slightly


def test_stepped_model_scores_like_the_fused_model():
    vocab = Vocabulary.from_text(SMALL_TEXT)
    model = model_for("lstm", vocab)
    ids = vocab.encode(SMALL_TEXT)
    fused = score_ids(model, ids)
    stepped = score_ids(SteppedModel(model, Stepper(model)), ids)
    assert stepped.chars == fused.chars and stepped.nats == pytest.approx(fused.nats, rel=1e-5)
    int8 = score_ids(SteppedModel(model, Int8Stepper(model)), ids)
    assert int8.nats == pytest.approx(fused.nats, abs=0.02) and int8.nats != fused.nats


def test_cli_quantize_on_sample_and_evaluate(tmp_path, small_text_file):
    run = tmp_path / "run"
    assert (
        runner.invoke(app, ["train", str(small_text_file), "--out", str(run), *TINY_TRAIN_FLAGS]).exit_code
        == 0
    )
    plain = json.loads(runner.invoke(app, ["evaluate", str(run), str(small_text_file), "--json"]).stdout)
    done = runner.invoke(app, ["evaluate", str(run), str(small_text_file), "--json", "--quantize", "int8"])
    assert done.exit_code == 0, done.output
    int8 = json.loads(done.stdout)
    assert plain["quantize"] == "none" and int8["quantize"] == "int8" and int8["chars"] == plain["chars"]
    assert int8["nats"] == pytest.approx(plain["nats"], abs=0.02)
    args = ["sample", str(run), "-n", "100", "--seed", "7", "--quantize", "int8"]
    first, again = runner.invoke(app, args), runner.invoke(app, args)
    assert (
        first.exit_code == 0 and first.stdout == again.stdout and len(first.stdout) == 101
    )  # 100 new characters and the final newline
    bad = runner.invoke(app, ["sample", str(run), "--quantize", "int4"])
    assert bad.exit_code == 2
