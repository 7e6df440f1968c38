"""Dynamic evaluation: scored before learning, adapts to a text, leaves the checkpoint alone; the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.dynamic import DynamicConfig, dynamic_score
from charrnn.evaluate import score_ids
from charrnn.model import CharRNN, ModelConfig
from charrnn.vocab import Vocabulary
from conftest import TINY_TRAIN_FLAGS

runner = CliRunner()
TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"


def tiny_model(vocab: Vocabulary, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(len(vocab), layers=2, hidden=32, embedding=8, dropout=0.3)).eval()


def test_a_vanishing_step_gives_the_static_loss_and_the_first_segment_is_never_learned_from():
    vocab = Vocabulary.from_text(TEXT)
    model = tiny_model(vocab)
    ids = vocab.encode(TEXT * 4)  # under 1,024 characters: static scoring is one sequential stream too
    static = score_ids(model, ids)
    still = dynamic_score(model, ids, "cpu", DynamicConfig(lr=1e-12))
    assert still.chars == static.chars == ids.numel() - 1
    assert still.nats == pytest.approx(static.nats, rel=1e-5)
    # one segment covering the whole text: scored before any step, whatever the step size
    whole = dynamic_score(model, ids, "cpu", DynamicConfig(lr=1.0, segment=ids.numel()))
    assert whole.nats == pytest.approx(static.nats, rel=1e-5)


@pytest.mark.parametrize("method", ["rms", "sgd"])
def test_the_model_adapts_to_a_repeated_passage_and_the_original_is_untouched(method):
    vocab = Vocabulary.from_text(TEXT)
    model = tiny_model(vocab)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = vocab.encode(TEXT * 8)
    static = score_ids(model, ids)
    lr, gain = (3e-2, 0.3) if method == "rms" else (2.0, 0.1)
    adapted = dynamic_score(model, ids, "cpu", DynamicConfig(lr=lr, segment=20, method=method))
    assert adapted.nats < static.nats - gain  # a repeated passage is learned as it is read
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_decay_pulls_towards_the_trained_weights():
    vocab = Vocabulary.from_text(TEXT)
    model = tiny_model(vocab)
    ids = vocab.encode(TEXT * 8)
    free = dynamic_score(model, ids, "cpu", DynamicConfig(lr=3e-3, segment=20))
    held = dynamic_score(model, ids, "cpu", DynamicConfig(lr=3e-3, segment=20, decay=0.9))
    static = score_ids(model, ids)
    assert free.nats < held.nats < static.nats + 0.05  # strong decay keeps it near the trained model


def test_cli_reports_static_and_dynamic_side_by_side(tmp_path, small_text_file):
    run = tmp_path / "run"
    assert (
        runner.invoke(app, ["train", str(small_text_file), "--out", str(run), *TINY_TRAIN_FLAGS]).exit_code
        == 0
    )
    as_json = runner.invoke(app, ["evaluate", str(run), str(small_text_file), "--dynamic", "--json"])
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.stdout)
    dyn = result["dynamic"]
    assert dyn["chars"] == result["chars"] and dyn["gain_nats"] == pytest.approx(result["nats"] - dyn["nats"])
    assert dyn["lr"] == DynamicConfig().lr and dyn["segment"] == DynamicConfig().segment
    plain = runner.invoke(app, ["evaluate", str(run), str(small_text_file)])
    assert "dynamic" not in plain.stdout
    table = runner.invoke(
        app, ["evaluate", str(run), str(small_text_file), "--dynamic", "--dynamic-lr", "1e-3"]
    )
    assert (
        table.exit_code == 0
        and "dynamic cross-entropy" in table.stdout
        and "gain from dynamic" in table.stdout
    )
    bad = runner.invoke(app, ["evaluate", str(run), str(small_text_file), "--dynamic", "--dynamic-lr", "0"])
    assert bad.exit_code == 2 and "must be above 0" in bad.output


def test_sample_adapts_to_a_prime_file(tmp_path, small_text_file):
    run = tmp_path / "run"
    assert (
        runner.invoke(app, ["train", str(small_text_file), "--out", str(run), *TINY_TRAIN_FLAGS]).exit_code
        == 0
    )
    prime = tmp_path / "prime.txt"
    prime.write_text("the dog sat on the log. " * 10, encoding="utf-8")
    args = ["sample", str(run), "--prime-file", str(prime), "-n", "80", "--seed", "5"]
    plain = runner.invoke(app, args)
    adapted = runner.invoke(app, [*args, "--adapt", "--adapt-lr", "3e-3"])
    assert plain.exit_code == 0 and adapted.exit_code == 0, adapted.output
    assert len(plain.stdout) == len(adapted.stdout) == 81  # the new text only: a prime file is not echoed
    assert plain.stdout != adapted.stdout  # the same seed, other weights
    assert "adapted to the prime (239 characters" in adapted.stderr
    echoed = runner.invoke(app, ["sample", str(run), "--prime", "the dog", "-n", "5"])
    assert echoed.stdout.startswith("the dog")
    both = runner.invoke(app, [*args, "--prime", "x"])
    assert both.exit_code == 1 and "not both" in both.stderr
    short = runner.invoke(app, ["sample", str(run), "--prime", "t", "--adapt"])
    assert short.exit_code == 1 and "at least 2 characters" in short.stderr
