"""Data-parallel training: 2 CPU ranks with gloo on the loopback interface, started by torchrun.

Each test starts real processes (torchrun, or the ranks by hand where a test needs to kill one), with a
tiny model and text, so each takes a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.evaluate import score_ids, score_sums
from charrnn.model import CharRNN, ModelConfig
from conftest import REPO, SMALL_TEXT

TINY = [
    "--hidden",
    "32",
    "--layers",
    "1",
    "--embedding",
    "16",
    "--seq-len",
    "16",
    "--dropout",
    "0",
    "--quiet",
]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text(SMALL_TEXT * 3, encoding="utf-8")
    return path


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _torchrun(*args, ranks: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] + [
        "-m",
        "charrnn",
        "train",
        *map(str, args),
    ]


def _charrnn(*args) -> list[str]:
    return [sys.executable, "-m", "charrnn", *map(str, args)]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _run(command, timeout=120, **env):
    return subprocess.run(command, env=_env(**env), capture_output=True, text=True, timeout=timeout)


def test_two_ranks_follow_the_single_process_trajectory(tmp_path, corpus):
    """2 ranks x batch 4 == 1 process x batch 8: the same streams, the same averaged gradient, the same
    validation streams; only the order of floating-point sums differs (in float32: bf16 autocast, the
    default on CPUs with native bf16, rounds each rank's products at another place)."""
    flags = [*TINY, "--max-steps", "30", "--eval-every", "10", "--precision", "fp32"]
    two = _run(_torchrun(corpus, *flags, "--batch-size", "4", "--out", tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout == ""
    one = _run(_charrnn("train", corpus, *flags, "--batch-size", "8", "--out", tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    m2, m1 = _metrics(tmp_path / "two"), _metrics(tmp_path / "one")
    assert [e["step"] for e in m2] == [e["step"] for e in m1] == [10, 20, 30]  # written once, by rank 0
    for a, b in zip(m2, m1, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["val_chars"] == b["val_chars"]
    w2, w1 = load_checkpoint(tmp_path / "two" / "last.pt"), load_checkpoint(tmp_path / "one" / "last.pt")
    for key, value in w1.weights.items():
        torch.testing.assert_close(w2.weights[key], value, rtol=1e-4, atol=1e-5)
    assert (
        w2.training.carry[0].shape == w1.training.carry[0].shape
    )  # the global streams' state, gathered from both
    written = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert written == [".lock", "best.pt", "last.pt", "metrics.jsonl"]  # rank 0's lock and files only
    # the checkpoint of a distributed run samples and evaluates in one process
    sampled = _run(_charrnn("sample", tmp_path / "two", "-n", "20", "--seed", "1"))
    assert sampled.returncode == 0 and len(sampled.stdout) >= 20, sampled.stderr
    scored = _run(_charrnn("evaluate", tmp_path / "two", corpus, "--json"))
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["chars"] == len(SMALL_TEXT * 3) - 1


def _start(command, run: Path, **env) -> subprocess.Popen:
    proc = subprocess.Popen(
        command, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 90
    while not (run / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("how", ["SIGTERM to torchrun", "Ctrl-C to the process group"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, corpus, how):
    flags = [*TINY, "--batch-size", "4", "--max-steps", "400", "--eval-every", "20"]
    straight = _run(_torchrun(corpus, *flags, "--out", tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _torchrun(corpus, *flags, "--out", run),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 90
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    if how == "SIGTERM to torchrun":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: every process gets it
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    stopped = load_checkpoint(run / "last.pt").progress.step
    assert 0 < stopped < 400, stderr[-3000:]
    assert f"stopped at step {stopped}; saved" in stderr  # once: rank 0 reports, rank 1 stays silent
    assert stderr.count("stopped at step") == 1
    assert "resume with: torchrun --standalone --nproc-per-node 2 -m charrnn train" in stderr
    assert str(REPO / "charrnn") not in stderr  # no traceback through charrnn (torchrun prints its own)
    resumed = _run(_torchrun(corpus, "--resume", run, "--quiet"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_checkpoint(run / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    assert a.progress.step == b.progress.step == 400
    for key, value in b.weights.items():
        assert torch.equal(a.weights[key], value), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_env(rank: int, port: int, **extra) -> dict:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        **extra,
    }


def test_a_killed_rank_ends_the_other_with_an_error_in_bounded_time(tmp_path, corpus):
    port = _free_port()
    run = tmp_path / "run"
    flags = [*TINY, "--batch-size", "4", "--max-steps", "100000", "--eval-every", "20", "--out", run]
    command = _charrnn("train", corpus, *flags)
    ranks = [
        subprocess.Popen(
            command,
            env={**_env(), **_rank_env(r, port, CHARRNN_DIST_TIMEOUT="15")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    deadline = time.time() + 90
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    ranks[1].send_signal(signal.SIGKILL)
    start = time.time()
    _, stderr = ranks[0].communicate(timeout=60)
    assert time.time() - start < 45
    assert ranks[0].returncode == 1, stderr
    assert "lost contact with the other ranks" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    load_checkpoint(run / "last.pt")  # the last checkpoint is whole: the run can resume from it


def test_bad_setups_are_one_line_errors(tmp_path, corpus):
    flags = [*TINY, "--max-steps", "5", "--out", tmp_path / "run"]
    no_master = _run(_charrnn("train", corpus, *flags), WORLD_SIZE="2", RANK="0")
    assert no_master.returncode == 1 and "MASTER_ADDR is not" in no_master.stderr
    unreachable = _run(
        _charrnn("train", corpus, *flags),
        timeout=60,
        **_rank_env(1, _free_port(), CHARRNN_DIST_TIMEOUT="3"),
    )
    assert unreachable.returncode == 1 and "cannot join the other ranks" in unreachable.stderr
    # ours is one line; PyTorch's C++ side may log its own socket error line before it
    assert unreachable.stderr.count("error:") == 1 and "Traceback" not in unreachable.stderr
    nccl = _run(_charrnn("train", corpus, *flags, "--device", "cpu", "--backend", "nccl"))
    assert nccl.returncode == 1 and "--backend nccl needs CUDA" in nccl.stderr
    bad_rank = _run(_charrnn("train", corpus, *flags), WORLD_SIZE="2", RANK="5")
    assert bad_rank.returncode == 1 and "do not fit together" in bad_rank.stderr


def test_resume_with_another_number_of_ranks_is_refused(tmp_path, corpus):
    run = tmp_path / "run"
    two = _run(_torchrun(corpus, *TINY, "--batch-size", "4", "--max-steps", "10", "--out", run))
    assert two.returncode == 0, two.stderr[-3000:]
    alone = _run(_charrnn("train", corpus, "--resume", run, "--max-steps", "20", "--quiet"))
    assert alone.returncode == 1
    assert "trained by 2 process(es) and resumes only with as many" in alone.stderr
    assert "torchrun --nproc-per-node 2" in alone.stderr


def test_split_validation_adds_up_to_the_single_process_score():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=7, layers=2, hidden=12, embedding=4, dropout=0.0)).eval()
    ids = torch.randint(0, 7, (5000,)).to(torch.uint8)
    whole = score_ids(model, ids, chunk_len=50, warmup=30)
    for parts in (2, 3, 9, 64):  # 9 streams: some parts are empty when there are more parts than streams
        sums = [score_sums(model, ids, chunk_len=50, warmup=30, part=(k, parts)) for k in range(parts)]
        total, count = sum(s[0] for s in sums), sum(s[1] for s in sums)
        assert count == whole.chars
        # (the same sums, but in row blocks of other sizes: float32 kernels round a little differently)
        assert total / count == pytest.approx(whole.nats, rel=1e-6)


def test_more_local_ranks_than_gpus_is_refused(monkeypatch):
    from charrnn.device import pick_device
    from charrnn.errors import CharrnnError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(CharrnnError, match="2 ranks on this machine but 1 GPU"):
        pick_device("cuda", local_rank=1, local_world_size=2)
    assert pick_device("cpu", local_rank=1, local_world_size=2).type == "cpu"


def test_one_rank_under_torchrun_trains_through_the_process_group(tmp_path, corpus):
    run = tmp_path / "run"
    done = _run(_torchrun(corpus, *TINY, "--max-steps", "10", "--out", run, ranks=1))
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(run / "last.pt").training.world_size == 1
