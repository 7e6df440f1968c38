"""`charrnn info`: the panel, and --json that round-trips and matches the checkpoint."""

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from charrnn.checkpoint import FORMAT, load_checkpoint, model_from_checkpoint
from charrnn.cli import app
from charrnn.info import escape_char, printable_vocab
from charrnn.model import count_parameters
from charrnn.settings import reproduce_flags as train_flags
from conftest import SMALL_TEXT, TINY_TRAIN_FLAGS

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("info")
    text = folder / "small.txt"
    text.write_text(SMALL_TEXT + "\x1c\t\r", encoding="utf-8")
    result = invoke("train", text, "--out", folder / "run", *TINY_TRAIN_FLAGS, "--max-time", "5m")
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_json_round_trips_and_matches_the_checkpoint(run):
    result = invoke("info", run, "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stderr == ""
    info = json.loads(result.stdout)
    blob = load_checkpoint(run / "best.pt")
    model, vocab = model_from_checkpoint(blob)
    assert info["checkpoint"] == str(run / "best.pt")
    assert info["parameters"] == count_parameters(model)
    assert info["vocab"] == blob.vocab.to_list() == vocab.to_list() and info["vocab_size"] == len(vocab)
    assert info["steps"] == blob.progress.step and info["evaluations"] == len(blob.history)
    assert info["epochs"] == blob.history[-1]["epoch"]
    assert info["best_val_loss"] == pytest.approx(blob.progress.best_val)
    assert info["training_time"] == pytest.approx(blob.progress.elapsed)
    assert info["corpus"] == {
        "name": "small",
        "size": blob.corpus.chars,
        "sha256": blob.corpus.sha256,
        "source": str((run.parent / "small.txt").resolve()),
    }
    assert info["level"] == "char" and info["format_version"] == 2 and info["resumable"]
    assert info["file_size"] == (run / "best.pt").stat().st_size
    assert (
        info["model_config"] == blob.model_config.to_dict()
        and info["train_config"] == blob.train_config.to_dict()
    )
    assert (info["cell"], info["layers"], info["hidden"], info["embedding"]) == ("lstm", 1, 32, 16)
    flags = " ".join(info["flags"])
    for expected in ("--hidden 32", "--layers 1", "--batch-size 4", "--seq-len 16", "--max-steps 30"):
        assert expected in flags
    assert "--max-time 300s" in flags and "--level char" in flags
    assert json.loads(json.dumps(info)) == info


def test_panel_shows_the_facts_with_escaped_vocabulary(run):
    result = invoke("info", run / "last.pt", env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert result.stderr == ""
    for words in ("LSTM, 1 layer x 32 hidden units", "parameters", "small", "fingerprint", "sha256", "steps"):
        assert words in out
    assert "charrnn-checkpoint version 2" in out and "--hidden 32" in out and "bytes" in out
    assert "\\n" in out and "\\x1c" in out and "\\t" in out and "\\r" in out and "\\x20" in out
    assert "\x1c" not in out and "\r" not in out
    narrow = invoke("info", run, env={"COLUMNS": "40"})
    assert narrow.exit_code == 0 and max(map(len, narrow.stdout.splitlines())) <= 40


def test_escapes():
    assert (
        printable_vocab(["\n", " ", "a", "\\", "\x00", "\u2028", "é", "東"]) == "\\n\\x20a\\\\\\x00\\u2028é東"
    )
    assert escape_char("\U0001f600") == "\U0001f600" and escape_char("\U000e0001") == "\\U000e0001"


def test_flags_rebuild_the_settings():
    flags = train_flags(
        {"cell": "gru", "weight_tying": True, "recurrent_dropout": None},
        {"lr": 0.003, "val_chars": None, "scheduled_sampling": [0.0, 0.25], "log_grad_norms": False},
        "byte",
    )
    assert flags == [
        "--cell", "gru", "--weight-tying", "--lr", "0.003", "--val-chars", "0",
        "--scheduled-sampling", "0:0.25", "--level", "byte",
    ]  # fmt: skip


def test_an_old_checkpoint_without_level_corpus_or_history(run, tmp_path):
    blob = torch.load(run / "best.pt", weights_only=True)
    v1 = {
        "format": FORMAT,
        "version": 1,
        "model_config": blob["model_config"],
        "vocab": blob["vocab"],
        "model": {re.sub(r"^rnns\.(\d+)\.(\w+)_l0$", r"rnn.\2_l\1", k): v for k, v in blob["model"].items()},
    }
    torch.save(v1, tmp_path / "old.pt")
    result = invoke("info", tmp_path / "old.pt", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["format_version"] == 1 and info["level"] == "char" and not info["resumable"]
    assert info["corpus"] == {"name": None, "size": None, "sha256": None, "source": None}
    assert info["steps"] is None and info["best_val_loss"] is None and info["evaluations"] == 0
    panel = invoke("info", tmp_path / "old.pt")
    assert panel.exit_code == 0, panel.output
    assert "unknown" in panel.stdout and "version 1" in panel.stdout and "weights only" in panel.stdout


def test_byte_level_vocabulary_is_summarised(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(SMALL_TEXT, encoding="utf-8")
    flags = [f if f != "30" else "10" for f in TINY_TRAIN_FLAGS]
    assert invoke("train", text, "--out", tmp_path / "b", *flags, "--level", "byte").exit_code == 0
    result = invoke("info", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "256 byte values" in result.stdout and "bytes" in result.stdout
    info = json.loads(invoke("info", tmp_path / "b", "--json").stdout)
    assert info["level"] == "byte" and info["vocab_size"] == 256 and "--level byte" in " ".join(info["flags"])


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing.pt", "no such checkpoint"),
        (
            lambda p: [(p / "junk.pt").write_bytes(b"not a zip"), p / "junk.pt"][1],
            "not a readable checkpoint",
        ),
        (lambda p: p, "holds no checkpoint"),
    ],
)
def test_bad_input_is_one_line(make, expected, tmp_path):
    result = invoke("info", make(tmp_path), "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
