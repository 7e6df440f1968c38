"""Nothing lost when runs collide or a process dies at any moment: the run-folder lock, whole-line logs,
and a chaos test that kills training at random moments and checks that the resumed run is exact."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.jsonl import append_record, read_records
from conftest import TINY_TRAIN_FLAGS

TINY = list(TINY_TRAIN_FLAGS)


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "charrnn", *map(str, args)]


def _flags(steps: int, every: int = 10) -> list[str]:
    flags = list(TINY)
    flags[flags.index("--max-steps") + 1] = str(steps)
    flags[flags.index("--eval-every") + 1] = str(every)
    return flags


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)


def test_a_second_run_in_the_same_folder_is_refused_while_the_first_lives(tmp_path, small_text_file):
    run = tmp_path / "run"
    first = subprocess.Popen(
        _cli("train", small_text_file, "--out", run, *_flags(100000, 20)),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(run / "last.pt", first)
        for extra in ([], ["--overwrite"], ["--resume", run]):
            second = subprocess.run(
                _cli("train", small_text_file, "--out", run, *_flags(50), *extra),
                env=_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert second.returncode == 1, second.stderr
            assert f"{run} is being trained by another process (pid {first.pid})" in second.stderr
        for _ in range(5):  # reading the run while it saves every 20 steps
            sampled = subprocess.run(
                _cli("sample", run, "-n", "20"), env=_env(), capture_output=True, text=True, timeout=60
            )
            assert sampled.returncode == 0, sampled.stderr
            scored = subprocess.run(
                _cli("evaluate", run, small_text_file, "--json"),
                env=_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert scored.returncode == 0 and json.loads(scored.stdout)["chars"] > 0, scored.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the lock died with its process: the run resumes at once
    more = load_checkpoint(run / "last.pt").progress.step + 10
    resumed = subprocess.run(
        _cli("train", small_text_file, "--resume", run, "--max-steps", more, "-q"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr


def test_appends_are_whole_lines_and_readers_skip_torn_ones(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_record(path, {"step": 1})
    with open(path, "ab") as f:
        f.write(b'{"step": 2, "val_lo')  # a process killed in the middle of a write
    append_record(path, {"step": 3})
    warnings = []
    assert read_records(path, warnings.append) == [{"step": 1}, {"step": 3}]
    assert len(warnings) == 1 and "line 2" in warnings[0]
    assert path.read_bytes().count(b"\n") == 3  # the next record started on a fresh line


def test_resume_drops_log_lines_written_after_the_checkpoint(tmp_path, small_text_file):
    run = tmp_path / "run"
    done = subprocess.run(
        _cli("train", small_text_file, "--out", run, "--log-grad-norms", *_flags(20)),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # as if killed after logging step 30 but before saving it
    append_record(run / "metrics.jsonl", {"step": 30, "train_loss": 1.0})
    append_record(run / "grad_norms.jsonl", {"step": 30, "norms": [1.0]})
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 31')
    resumed = subprocess.run(
        _cli("train", small_text_file, "--resume", run, "--max-steps", "30", "-q"),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    steps = [r["step"] for r in read_records(run / "metrics.jsonl")]
    assert steps == [10, 20, 30]
    assert [r["step"] for r in read_records(run / "grad_norms.jsonl")] == [1, 10, 20, 30]


SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]


def test_chaos_random_kills_and_resumes_end_bit_identical(tmp_path, small_text_file):
    """Ten or more kills at random moments (seeded): right after start, mid-training, during evaluations
    and checkpoint saves (every 10 steps here, so a good share of moments fall in them). A resume is
    exact from any checkpoint, so the final weights must equal an uninterrupted run's."""
    steps = 1000
    straight = tmp_path / "straight"
    done = subprocess.run(
        _cli("train", small_text_file, "--out", straight, *_flags(steps)),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rng = random.Random(20261126)
    run = tmp_path / "run"
    kills = 0
    for _round in range(60):
        if (run / "last.pt").exists():
            if load_checkpoint(run / "last.pt").progress.step >= steps:
                break
            command = _cli("train", small_text_file, "--resume", run, "-q")
        else:
            command = _cli("train", small_text_file, "--out", run, "--overwrite", *_flags(steps))
        proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if kills < 14:
            # after the import, somewhere in the run: wait for some progress, then a random extra moment
            before = (run / "metrics.jsonl").stat().st_size if (run / "metrics.jsonl").exists() else 0
            deadline = time.time() + 60
            while proc.poll() is None and time.time() < deadline:
                size = (run / "metrics.jsonl").stat().st_size if (run / "metrics.jsonl").exists() else 0
                if size > before:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.08))  # an evaluation and two saves every 10 steps, ~20 ms apart
            if proc.poll() is None:
                proc.send_signal(rng.choice(SIGNALS))
                kills += 1
        proc.communicate(timeout=120)
        for name in ("best.pt", "last.pt"):  # every checkpoint that exists loads cleanly
            if (run / name).exists():
                load_checkpoint(run / name)
        read_records(run / "metrics.jsonl", lambda message: None)  # parses, torn lines skipped
    assert kills >= 10
    final = load_checkpoint(run / "last.pt")
    assert final.progress.step == steps
    reference = load_checkpoint(straight / "last.pt")
    for key, value in reference.weights.items():
        assert torch.equal(final.weights[key], value), key
    assert [r["step"] for r in read_records(run / "metrics.jsonl")] == list(range(10, steps + 1, 10))


@pytest.mark.parametrize("corrupt", ["out of range", "another valid id"])
def test_a_damaged_encoding_is_rebuilt_from_the_source(tmp_path, small_text_file, isolated_cache, corrupt):
    """The cache checks itself: a changed id (outside the vocabulary, or another valid one) is caught by
    the range check or the checksum and the entry rebuilt from the source file."""
    run = tmp_path / "run"
    first = subprocess.run(
        _cli("train", small_text_file, "--out", run, *_flags(10)), env=_env(), capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    (token_file,) = (isolated_cache / "tokens").glob("*.tok")
    data = bytearray(token_file.read_bytes())
    data[-5] = 250 if corrupt == "out of range" else (data[-5] + 1) % 20
    token_file.write_bytes(bytes(data))
    again = subprocess.run(
        _cli("train", small_text_file, "--out", tmp_path / "again", *_flags(10)),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert "was damaged" in again.stderr and "rebuilding it" in again.stderr
    a, b = load_checkpoint(run / "last.pt"), load_checkpoint(tmp_path / "again" / "last.pt")
    assert a.corpus.sha256 == b.corpus.sha256  # trained on the file's text, not the damage
