"""The CUDA path: training in fp32 and bf16, sampling on the GPU, checkpoints moved between devices, NCCL.

Skipped without a CUDA GPU (the project's CI machine has none); run as they are on a GPU machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.cli import app
from charrnn.evaluate import score_text
from charrnn.stepper import Stepper
from conftest import SMALL_TEXT, TINY_TRAIN_FLAGS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_on_the_gpu_then_use_the_checkpoint_anywhere(tmp_path, small_text_file, precision):
    run = tmp_path / precision
    trained = invoke(
        "train",
        small_text_file,
        "--device",
        "cuda",
        "--precision",
        precision,
        "--out",
        run,
        *TINY_TRAIN_FLAGS,
    )
    assert trained.exit_code == 0, trained.output
    blob = load_checkpoint(run / "last.pt")
    assert all(t.device.type == "cpu" for t in blob.weights.values())  # saved device-free
    on_gpu = json.loads(invoke("evaluate", run, small_text_file, "--device", "cuda", "--json").stdout)
    on_cpu = json.loads(invoke("evaluate", run, small_text_file, "--device", "cpu", "--json").stdout)
    assert on_gpu["nats"] == pytest.approx(on_cpu["nats"], rel=1e-4)
    for device in ("cuda", "cpu"):
        sampled = invoke("sample", run, "-n", "50", "--seed", "3", "--device", device)
        assert sampled.exit_code == 0 and len(sampled.stdout) > 50
    resumed = invoke(
        "train", small_text_file, "--resume", run, "--device", "cpu", "--max-steps", "40", "--quiet"
    )
    assert resumed.exit_code == 0, resumed.output  # a GPU run resumes on the CPU


def test_stepper_on_the_gpu_matches_the_fused_model(small_text_file):
    from charrnn.model import CharRNN, ModelConfig
    from charrnn.vocab import Vocabulary

    torch.manual_seed(0)
    vocab = Vocabulary.from_text(SMALL_TEXT)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=2, hidden=64, embedding=16)).cuda().eval()
    ids = vocab.encode(SMALL_TEXT[:40]).long().cuda()
    with torch.no_grad():
        logits, _ = model(ids[None])
        stepper = Stepper(model)
        state = stepper.split_state(model.init_state(1, "cuda"))
        stepped = [stepper.step(ids[t : t + 1], state) for t in range(ids.numel())]
    torch.testing.assert_close(torch.cat(stepped), logits[0], rtol=1e-3, atol=1e-3)
    assert score_text(model.cpu(), vocab, SMALL_TEXT).chars == len(SMALL_TEXT) - 1  # moved back to the CPU


def test_torchrun_one_gpu_with_nccl(tmp_path, small_text_file):
    run = tmp_path / "nccl"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=1",
        "-m",
        "charrnn",
        "train",
        str(small_text_file),
        "--device",
        "cuda",
        "--backend",
        "nccl",
        "--out",
        str(run),
        *TINY_TRAIN_FLAGS,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    blob = load_checkpoint(run / "last.pt")
    assert blob.training.world_size == 1
    model, _ = model_from_checkpoint(blob, "cpu")
    assert next(model.parameters()).device.type == "cpu"
