"""Defect 7: a model too large for the machine is refused before anything is allocated."""

from __future__ import annotations

import itertools
import time

import pytest
import torch
from typer.testing import CliRunner

from charrnn import memory
from charrnn.cli import app
from charrnn.config import TrainConfig
from charrnn.errors import OutOfMemory
from charrnn.model import CharRNN, ModelConfig, count_parameters
from conftest import TINY_TRAIN_FLAGS


@pytest.mark.parametrize(
    "cell, kind, tied",
    itertools.product(["lstm", "gru", "rnn", "peephole-lstm"], ["embedding", "onehot"], [0, 1]),
)
def test_the_weight_count_matches_the_model(cell, kind, tied):
    if tied and kind == "onehot":
        pytest.skip("tying needs an embedding")
    embedding = 24 if tied else (11 if kind == "onehot" else 8)
    config = ModelConfig(
        11, cell=cell, layers=2, hidden=24, embedding=embedding, input=kind, weight_tying=bool(tied)
    )
    assert memory.count_weights(config) == count_parameters(CharRNN(config))


def test_the_estimate_grows_with_the_model_and_the_batch():
    small = memory.estimate_training(ModelConfig(65, hidden=512), TrainConfig())
    wide = memory.estimate_training(ModelConfig(65, hidden=1024), TrainConfig())
    batch = memory.estimate_training(ModelConfig(65, hidden=512), TrainConfig(batch_size=64))
    assert 3.3e6 < small.weights < 3.4e6 and small.total < 200e6  # the default 2x512 needs little
    assert 3.5 < wide.state_bytes / small.state_bytes < 4.1
    assert batch.activation_bytes == 4 * small.activation_bytes and batch.state_bytes == small.state_bytes


def test_check_refuses_only_what_does_not_fit(monkeypatch):
    huge = ModelConfig(65, hidden=16384)
    cpu = torch.device("cpu")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 24 * 10**9)
    with pytest.raises(OutOfMemory) as caught:
        memory.check_training_fits(huge, TrainConfig(), cpu)
    assert caught.value.setting == "hidden" and "GB" in str(caught.value)
    memory.check_training_fits(ModelConfig(65, hidden=512), TrainConfig(), cpu)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # unknown: never refuse
    memory.check_training_fits(huge, TrainConfig(), cpu)


def test_a_huge_model_is_refused_at_once_through_the_cli(tmp_path, small_text_file, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 4 * 10**9)  # the same on any machine
    flags = [f for f in TINY_TRAIN_FLAGS if f not in ("--hidden", "32")]
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["train", str(small_text_file), "--out", str(tmp_path / "r"), *flags, "--hidden", "16384"]
    )
    assert result.exit_code == 1 and time.monotonic() - started < 30
    assert "needs about" in result.output and "--hidden" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "last.pt").exists()
