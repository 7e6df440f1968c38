"""The memory estimate a training run is checked against before it allocates anything (issue 21)."""

from __future__ import annotations

import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from charrnn import memory, train
from charrnn.cells import CELLS
from charrnn.cli import app
from charrnn.config import TrainConfig
from charrnn.errors import OutOfMemory, setting_ref
from charrnn.memory import (
    available_bytes,
    cgroup_room,
    check_training_fits,
    count_weights,
    estimate_training,
    meminfo_available,
)
from charrnn.model import CharRNN, ModelConfig, count_parameters

CPU = torch.device("cpu")
GB = 10**9


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    "shape",
    [
        {"input": "embedding"},
        {"input": "onehot"},
        {"input": "embedding", "weight_tying": True, "embedding": 8},
        {"input": "embedding", "layers": 1},
        {"input": "onehot", "layers": 3},
    ],
)
def test_parameter_count_matches_the_built_model(cell, shape):
    config = ModelConfig(vocab_size=11, cell=cell, **{"hidden": 8, "embedding": 5, "layers": 2, **shape})
    assert count_weights(config) == count_parameters(CharRNN(config))


def _lstm(hidden: int):
    return estimate_training(ModelConfig(vocab_size=65, hidden=hidden), TrainConfig())


def test_weights_dominate_and_grow_with_hidden_squared():
    small, large = (_lstm(hidden) for hidden in (2048, 4096))
    assert 3.8 < large.per_weight_bytes / small.per_weight_bytes < 4.0  # H^2 matrices, less linear terms
    assert large.activation_bytes == pytest.approx(2 * small.activation_bytes, rel=0.02)
    assert large.per_weight_bytes == 20 * large.weights  # weight, gradient, 2 moments, a working copy


def test_activations_grow_with_the_window_and_halve_in_bfloat16():
    model = ModelConfig(vocab_size=65)
    base = estimate_training(model, TrainConfig())
    doubled = estimate_training(model, TrainConfig(batch_size=32))
    assert doubled.per_weight_bytes == base.per_weight_bytes
    assert doubled.activation_bytes == 2 * base.activation_bytes
    assert estimate_training(model, TrainConfig(seq_len=128)).activation_bytes == 2 * base.activation_bytes
    bf16 = estimate_training(model, TrainConfig(), torch.bfloat16)
    assert 0.5 * base.activation_bytes < bf16.activation_bytes < 0.6 * base.activation_bytes
    peephole = ModelConfig(vocab_size=65, cell="peephole-lstm")  # runs in float32 under autocast too
    assert (
        estimate_training(peephole, TrainConfig(), torch.bfloat16).activation_bytes
        > 0.9 * estimate_training(peephole, TrainConfig()).activation_bytes
    )


def test_ema_and_weight_dropout_add_their_copies():
    model, base = ModelConfig(vocab_size=65), estimate_training(ModelConfig(vocab_size=65), TrainConfig())
    with_ema = estimate_training(model, TrainConfig(ema=0.999))
    assert with_ema.state_bytes == base.state_bytes + 4 * base.weights
    variational = ModelConfig(vocab_size=65, dropout_mode="variational", dropout=0.3)
    w_hh = 2 * 4 * 512 * 512  # two layers' recurrent matrices: a mask and a masked copy of each
    assert estimate_training(variational, TrainConfig()).activation_bytes == base.activation_bytes + 8 * w_hh


def test_default_run_is_small():
    """A default 2x512 run must never be refused on a machine with a few GB free."""
    assert estimate_training(ModelConfig(vocab_size=200), TrainConfig()).total < 0.2 * GB


def _with_available(monkeypatch, value):
    monkeypatch.setattr(memory, "available_bytes", lambda device: value)


def test_refuses_in_one_line_naming_the_estimate_and_the_flags(monkeypatch):
    _with_available(monkeypatch, 2 * GB)
    with pytest.raises(OutOfMemory) as caught:
        check_training_fits(ModelConfig(vocab_size=65, hidden=4096), TrainConfig(precision="fp32"), CPU)
    error = caught.value
    assert error.setting == "hidden" and "\n" not in error.message
    assert setting_ref("hidden") in error.message and setting_ref("layers") in error.message
    assert "a 2x4096 LSTM needs about 4.5 GB to train (202.7M weights" in str(error)
    assert "this machine has 2.0 GB available" in str(error)


def test_a_huge_window_is_blamed_on_the_batch(monkeypatch):
    _with_available(monkeypatch, 2 * GB)
    with pytest.raises(OutOfMemory) as caught:
        check_training_fits(ModelConfig(vocab_size=65), TrainConfig(batch_size=4096, seq_len=512), CPU)
    assert caught.value.setting == "batch_size"
    flags = f"{setting_ref('batch_size')}, {setting_ref('seq_len')} or {setting_ref('hidden')}"
    assert caught.value.message.endswith(f"use a smaller {flags}")


def test_a_gpu_counts_its_free_memory_and_its_unused_cache(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (5 * GB, 80 * GB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 2 * GB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: GB)
    gpu = torch.device("cuda")
    assert available_bytes(gpu) == 6 * GB
    with pytest.raises(OutOfMemory, match="this GPU has 6.0 GB available"):
        check_training_fits(ModelConfig(vocab_size=65, hidden=8192), TrainConfig(precision="fp32"), gpu)


@pytest.mark.parametrize("available", [2 * GB, None])
def test_accepts_when_it_fits_or_memory_is_unknown(monkeypatch, available):
    _with_available(monkeypatch, available)
    check_training_fits(ModelConfig(vocab_size=65), TrainConfig(), CPU)
    if available is None:
        check_training_fits(ModelConfig(vocab_size=65, hidden=65536), TrainConfig(), CPU)


def test_meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       24683776 kB\nMemFree: 1 kB\nMemAvailable:   22544044 kB\n")
    assert meminfo_available(path) == 22544044 * 1024
    assert meminfo_available(tmp_path / "missing") is None


def _cgroup(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_cgroup_v2_takes_the_tightest_limit_and_counts_inactive_cache_as_free(tmp_path):
    root = tmp_path / "cgroup"
    _cgroup(root, cgroup_controllers="memory")
    _cgroup(root / "box", memory_max="8000000000\n", memory_current="1000000000\n")
    _cgroup(
        root / "box" / "job",
        memory_max="max\n",
        memory_current="3000000000\n",
        memory_stat="anon 1\ninactive_file 500000000\n",
    )
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/box/job\n")
    assert cgroup_room(root, proc) == 7_000_000_000
    _cgroup(root / "box" / "job", memory_max="4000000000\n")
    assert cgroup_room(root, proc) == 1_500_000_000
    proc.write_text("0::/\n")  # inside a container: the mount is the container's own cgroup
    assert cgroup_room(root, proc) is None


def test_cgroup_v1(tmp_path):
    root = tmp_path / "cgroup"
    job = root / "memory" / "job"
    _cgroup(job, memory_limit_in_bytes="9223372036854771712\n", memory_usage_in_bytes="100\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("12:pids:/x\n4:memory:/job\n0::/\n")
    assert cgroup_room(root, proc) is None  # v1's "no limit"
    _cgroup(
        job,
        memory_limit_in_bytes="2000000000\n",
        memory_usage_in_bytes="1200000000\n",
        memory_stat="cache 9\ntotal_inactive_file 200000000\n",
    )
    assert cgroup_room(root, proc) == 1_000_000_000
    proc.write_text("4:memory:/elsewhere\n")  # not visible here: the mount's own limit, none
    assert cgroup_room(root, proc) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_this_machine_reports_its_memory():
    free = available_bytes(CPU)
    assert free is not None and free > 0


def test_cli_refuses_a_huge_model_at_once(small_text_file, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        pytest.fail("the model was built: the memory check let a 3.2-billion-weight model through")

    monkeypatch.setattr(train, "CharRNN", fail)  # a guard: building it would take 13 GB and minutes
    real = memory.available_bytes  # read for real, but as on the machine (24 GB) at most
    monkeypatch.setattr(memory, "available_bytes", lambda device: min(real(device) or 24 * GB, 24 * GB))
    start = time.monotonic()
    out = tmp_path / "run"
    args = ["train", str(small_text_file), "--hidden", "16384", "--max-steps", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert time.monotonic() - start < 5
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: a 2x16384 LSTM needs about ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "GB to train (3.2B weights" in result.stderr and "--hidden" in result.stderr
    assert "Traceback" not in result.output
    assert not (out / "last.pt").exists()
