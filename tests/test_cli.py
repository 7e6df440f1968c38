"""The command-line tool end to end: train, sample, evaluate, pipes, signals and every promised error."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from conftest import SMALL_TEXT, TINY_TRAIN_FLAGS, shakespeare_path

runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny trained model shared by the sampling and evaluation tests."""
    folder = tmp_path_factory.mktemp("run")
    text = folder / "small.txt"
    text.write_text(SMALL_TEXT, encoding="utf-8")
    result = invoke("train", text, "--out", folder / "run", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_train_writes_checkpoints_metrics_and_nothing_on_stdout(tmp_path, small_text_file):
    out = tmp_path / "run"
    result = invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS[:-1])  # not quiet
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "training finished" in result.stderr and "best validation loss" in result.stderr
    assert {"best.pt", "last.pt", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [10, 20, 30]
    assert all(
        m["val_loss"] > 0 and abs(m["val_bpc"] - m["val_loss"] / 0.6931471805599453) < 1e-9 for m in lines
    )
    blob = load_checkpoint(out / "last.pt")
    assert blob.progress.step == 30 and blob.train_config.seq_len == 16
    assert set(blob.to_blob()) >= {
        "model",
        "optimizer",
        "vocab",
        "model_config",
        "train_config",
        "history",
        "rng",
    }


def test_default_run_folder_is_named_after_the_corpus(tmp_path, small_text_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", small_text_file, *TINY_TRAIN_FLAGS)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "checkpoints" / "small" / "best.pt").is_file()


def test_train_from_stdin(tmp_path):
    result = invoke("train", "-", "--out", tmp_path / "run", *TINY_TRAIN_FLAGS, input=SMALL_TEXT)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best.pt").is_file()


def test_sample_prints_prime_and_length(trained_run):
    result = invoke("sample", trained_run, "--prime", "the cat", "--length", "50", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the cat")
    assert len(result.stdout) == len("the cat") + 50 + 1  # and a final newline
    assert result.stderr == ""
    again = invoke("sample", trained_run, "--prime", "the cat", "--length", "50", "--seed", "1")
    assert again.stdout == result.stdout


def test_sample_prime_from_stdin_and_several_samples(trained_run):
    result = invoke(
        "sample",
        trained_run / "best.pt",
        "--prime",
        "-",
        "-n",
        "20",
        "--num-samples",
        "3",
        "--separator",
        "\\n==\\n",
        "--seed",
        "2",
        input="a bird",
    )
    assert result.exit_code == 0, result.output
    samples = result.stdout[:-1].split("\n==\n")
    assert len(samples) == 3 and all(s.startswith("a bird") and len(s) == 26 for s in samples)


def test_sample_unknown_prime_characters(trained_run):
    result = invoke("sample", trained_run, "--prime", "the Zebra€", "-n", "5")
    assert result.exit_code == 1
    assert "'Z'" in result.stderr and "'€'" in result.stderr and "--drop-unknown" in result.stderr
    assert "Traceback" not in result.output
    dropped = invoke("sample", trained_run, "--prime", "the Zebra€", "-n", "5", "--drop-unknown")
    assert dropped.exit_code == 0 and dropped.stdout.startswith("the ebra")


def test_evaluate_table_and_json(trained_run, tmp_path):
    text = tmp_path / "eval.txt"
    text.write_text("the cat sat on the mat. ¿Qué?", encoding="utf-8")
    table = invoke("evaluate", trained_run, text)
    assert table.exit_code == 0, table.output
    assert "bits per character" in table.stdout
    result = invoke("evaluate", trained_run, "-", "--json", input=text.read_text(encoding="utf-8"))
    data = json.loads(result.stdout)
    assert set("the cat sat on the mat. ¿Qué?") - set(SMALL_TEXT) == set("¿Qu?")
    assert data["unknown"] == 4 and data["chars"] == len("the cat sat on the mat. ¿Qué?") - 4 - 1
    assert data["bpc"] == pytest.approx(data["nats"] / 0.6931471805599453)
    assert data["perplexity"] == pytest.approx(2.718281828459045 ** data["nats"])


def test_evaluate_text_without_known_characters(trained_run):
    result = invoke("evaluate", trained_run, "-", input="ZZZZ")
    assert result.exit_code == 1 and "vocabulary" in result.stderr


def test_resume_continues_and_refuses_contradicting_flags(trained_run, tmp_path, small_text_file):
    out = tmp_path / "run"
    assert invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS).exit_code == 0
    bad = invoke("train", small_text_file, "--resume", out / "last.pt", "--hidden", "64", "--quiet")
    assert bad.exit_code == 1 and "--hidden 64 contradicts the checkpoint (--hidden 32)" in bad.stderr
    bad_cell = invoke("train", small_text_file, "--resume", out, "--cell", "gru", "--quiet")
    assert bad_cell.exit_code == 1 and "--cell" in bad_cell.stderr
    done = invoke("train", small_text_file, "--resume", out / "last.pt", "--quiet")
    assert done.exit_code == 1 and "raise --max-steps" in done.stderr
    refused = invoke("train", small_text_file, "--resume", out, "--max-steps", "20", "--lr", "0.001")
    assert refused.exit_code == 1 and "changed on resume" not in refused.stderr
    more = invoke("train", small_text_file, "--resume", out / "last.pt", "--max-steps", "40", "--lr", "0.001")
    assert more.exit_code == 0, more.output
    assert "--lr 0.004 -> 0.001" in more.stderr and "--max-steps 30 -> 40" in more.stderr
    assert load_checkpoint(out / "last.pt").progress.step == 40
    other = tmp_path / "other.txt"
    other.write_text("XYZ " * 500, encoding="utf-8")
    mismatch = invoke("train", other, "--resume", out / "last.pt", "--max-steps", "50", "--quiet")
    assert mismatch.exit_code == 1 and "vocabulary" in mismatch.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["train", "{text}", "--hidden", "0"],
        ["train", "{text}", "--layers", "0"],
        ["train", "{text}", "--batch-size", "0"],
        ["train", "{text}", "--seq-len", "-3"],
        ["train", "{text}", "--max-steps", "0"],
        ["train", "{text}", "--dropout", "1.0"],
        ["train", "{text}", "--dropout", "-0.1"],
        ["train", "{text}", "--lr", "0"],
        ["train", "{text}", "--epochs", "0"],
        ["train", "{text}", "--cell", "transformer"],
        ["sample", "{run}", "--length", "0"],
        ["sample", "{run}", "--temperature", "-0.5"],
        ["sample", "{run}", "--top-k", "0"],
        ["sample", "{run}", "--top-p", "0"],
        ["sample", "{run}", "--top-p", "1.5"],
        ["sample", "{run}", "--num-samples", "0"],
    ],
)
def test_out_of_range_options_get_the_usage_box(args, trained_run, small_text_file):
    result = invoke(*[a.format(text=small_text_file, run=trained_run) for a in args])
    assert result.exit_code == 2
    assert "Invalid value" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--max-time", "ten minutes"], "is not a duration"),
        (["--device", "cuda"], "no CUDA GPU"),
        (["--encoding", "klingon"], "unknown text encoding"),
        (["--seq-len", "4000"], "--seq-len"),
    ],
)
def test_bad_train_settings_are_one_line_errors(extra, expected, tmp_path, small_text_file):
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("train", small_text_file, "--out", tmp_path / "run", *TINY_TRAIN_FLAGS, *extra)
    assert result.exit_code == 1
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line
    assert not (tmp_path / "run" / "best.pt").exists()


def test_bad_checkpoints_are_one_line_errors(tmp_path, small_text_file):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.pt").write_bytes(b"\x00\x01junk")
    for target, expected in [
        (tmp_path / "nope", "no such checkpoint"),
        (tmp_path / "empty", "holds no checkpoint"),
        (tmp_path / "junk.pt", "not a readable checkpoint"),
    ]:
        for args in (["sample", target], ["evaluate", target, small_text_file]):
            result = invoke(*args)
            assert result.exit_code == 1 and expected in result.stderr, result.output
            assert "Traceback" not in result.output


def test_unwritable_output_folder(tmp_path, small_text_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("train", small_text_file, "--out", blocker / "run", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 1 and "cannot write to output folder" in result.stderr


def test_unreadable_corpus(tmp_path, small_text_file, monkeypatch):
    import charrnn.sources
    import charrnn.textstream

    def denied(*args, **kwargs):  # chmod 000 does not stop root, so simulate the refusal
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(charrnn.sources, "open", denied, raising=False)
    monkeypatch.setattr(charrnn.textstream, "open", denied, raising=False)
    result = invoke("train", small_text_file, "--out", tmp_path / "run", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 1 and "permission denied" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the permissions")
def test_output_folder_without_write_permission(tmp_path, small_text_file):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    result = invoke("train", small_text_file, "--out", locked / "run", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 1 and "cannot write to output folder" in result.stderr


def test_existing_run_is_never_overwritten_silently(tmp_path, small_text_file):
    out = tmp_path / "run"
    assert invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS).exit_code == 0
    before = (out / "best.pt").read_bytes()
    again = invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS)
    assert again.exit_code == 1 and "already holds a run" in again.stderr and "--resume" in again.stderr
    assert (out / "best.pt").read_bytes() == before
    fresh = invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS, "--overwrite", "--seed", "5")
    assert fresh.exit_code == 0, fresh.output
    assert (out / "best.pt").read_bytes() != before
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_from_a_folder_takes_last_pt(tmp_path, small_text_file):
    out = tmp_path / "run"
    assert invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS).exit_code == 0
    blob = load_checkpoint(out / "last.pt")
    blob.progress.step = 25  # make last.pt distinguishable from best.pt
    blob.save(out / "last.pt")
    result = invoke("train", small_text_file, "--resume", out, "--max-steps", "27", "--quiet")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "last.pt").progress.step == 27


def test_resume_on_another_text_with_the_same_characters_is_refused(tmp_path, small_text_file):
    out = tmp_path / "run"
    assert invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS).exit_code == 0
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text(SMALL_TEXT[::-1], encoding="utf-8")
    result = invoke("train", shuffled, "--resume", out, "--max-steps", "40", "--quiet")
    assert result.exit_code == 1 and "not the text this run was trained on" in result.stderr


def test_prime_from_stdin_must_be_text(trained_run):
    result = invoke("sample", trained_run, "--prime", "-", input=b"\xff\xfe abc")
    assert result.exit_code == 1 and "not valid utf-8" in result.stderr
    assert "give the prime as UTF-8 text" in result.stderr and "--lossy" not in result.stderr


def test_broken_separator_escape(trained_run):
    result = invoke("sample", trained_run, "--num-samples", "2", "-n", "5", "--separator", "\\x")
    assert result.exit_code == 1 and "--separator" in result.stderr


def test_extreme_temperatures(trained_run):
    nan = invoke("sample", trained_run, "-T", "nan")
    assert nan.exit_code == 2 and "Invalid value for '--temperature'" in nan.stderr
    greedy = invoke("sample", trained_run, "-T", "0", "-n", "30")
    for temperature in ("1e-30", "1e-300", "5e-324"):
        tiny = invoke("sample", trained_run, "-T", temperature, "-n", "30", "--seed", "1")
        assert tiny.exit_code == 0 and tiny.stdout == greedy.stdout, tiny.output


def test_absurd_learning_rates_get_the_usage_box(small_text_file):
    for flags in (["--lr", "3e38"], ["--weight-decay", "1e30"]):
        result = invoke("train", small_text_file, *flags)
        assert result.exit_code == 2 and "Invalid value" in result.stderr


def test_a_save_on_a_full_disk_is_one_line(tmp_path, small_text_file, monkeypatch):
    def torch_disk_full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4416 vs 4358")

    monkeypatch.setattr(torch, "save", torch_disk_full)  # the corpus cache fails too: that must not matter
    result = invoke("train", small_text_file, "--out", tmp_path / "run", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 1 and "is the disk full" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not list((tmp_path / "run").glob("*.pt")) and not list((tmp_path / "run").glob(".*.tmp"))


def test_unforeseen_failures_are_one_line_unless_debugging(trained_run, monkeypatch):
    import charrnn.sample

    def broken(*args, **kwargs):
        raise ValueError("something nobody expected\nsecond line")

    monkeypatch.setattr(charrnn.sample, "samples", broken)
    result = invoke("sample", trained_run, "-n", "5")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert (
        "unexpected ValueError: something nobody expected" in result.stderr
        and "CHARRNN_DEBUG" in result.stderr
    )
    monkeypatch.setenv("CHARRNN_DEBUG", "1")
    assert isinstance(invoke("sample", trained_run, "-n", "5").exception, ValueError)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.delenv("CHARRNN_DEBUG")
    monkeypatch.setattr(charrnn.sample, "samples", no_memory)
    result = invoke("sample", trained_run, "-n", "5", "--num-samples", "3")
    assert result.exit_code == 1 and "not enough memory" in result.stderr


def test_corpus_errors(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bin.dat").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 200)
    (tmp_path / "empty-folder").mkdir()
    cases = [
        ("no-such-corpus", "not a named corpus"),
        (tmp_path, "holds no usable text file (2 skipped"),  # a folder corpus: empty files are left out
        (tmp_path / "empty-folder", "holds no files"),
        (tmp_path / "empty.txt", "is empty"),
        (tmp_path / "bin.dat", "looks binary"),
        (tmp_path / "latin1.txt", "offset 3"),
    ]
    for corpus, expected in cases:
        result = invoke("train", corpus, "--out", tmp_path / "run", *TINY_TRAIN_FLAGS)
        assert result.exit_code == 1 and expected in result.stderr, (corpus, result.output)
    ok = invoke(
        "train",
        tmp_path / "latin1.txt",
        "--encoding",
        "latin-1",
        "--out",
        tmp_path / "run",
        *TINY_TRAIN_FLAGS,
    )
    assert ok.exit_code == 0, ok.output


def test_short_corpus_adapts_the_batch_size(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("abcdefghij" * 30)
    result = invoke(
        "train",
        text,
        "--out",
        tmp_path / "run",
        "--hidden",
        "8",
        "--layers",
        "1",
        "--seq-len",
        "16",
        "--batch-size",
        "64",
        "--max-steps",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert "using --batch-size 15" in result.stderr
    too_short = tmp_path / "tiny.txt"
    too_short.write_text("abc")
    result = invoke("train", too_short, "--out", tmp_path / "run2", "--max-steps", "3")
    assert result.exit_code == 1 and "too few for one window" in result.stderr


def test_named_corpora(monkeypatch, tmp_path):
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.delenv("CHARRNN_CORPUS_DIR", raising=False)
    result = invoke("train", "shakespeare", "--out", tmp_path / "s", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 1
    assert "cannot download corpus 'shakespeare'" in result.stderr and "CHARRNN_CORPUS_DIR" in result.stderr
    listing = invoke("corpora")
    assert "shakespeare" in listing.stdout and "python-stdlib" in listing.stdout
    stdlib = invoke(
        "train",
        "python-stdlib",
        "--out",
        tmp_path / "py",
        *TINY_TRAIN_FLAGS[:-5],
        "--max-steps",
        "3",
        "--quiet",
    )
    assert stdlib.exit_code == 0, stdlib.output


def test_python_names_corpus_is_the_stdlibs_public_names_one_per_line(tmp_path):
    import ast
    import json.decoder
    from pathlib import Path

    from charrnn.named_corpora import _defined_names, build_python_names, corpus_path

    assert "python-names" in invoke("corpora").stdout
    path = corpus_path("python-names")
    assert path.name == "python-names-{}.{}.txt".format(*sys.version_info[:2])
    data = path.read_bytes()
    assert data.isascii() and data.endswith(b"\n") and b"\r" not in data
    names = data.decode().split("\n")[:-1]
    assert names == sorted(set(names)) and 5_000 < len(names) < 100_000
    for name in names:
        parts = name.split(".")  # dotted module names, as json.decoder
        assert all(p.isidentifier() and not p.startswith("_") for p in parts), name
    found = set(names)
    well_known = {"json", "json.decoder", "math", "dumps", "OrderedDict", "ArgumentParser", "TextIOWrapper"}
    assert well_known <= found
    assert not {"TestDecode", "test_dumps", "unittest.test", "idlelib.idle_test"} & found  # no tests
    assert corpus_path("python-names") == path  # cached
    build_python_names(tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_bytes() == data  # deterministic
    # The one-regex scan finds exactly what `ast` finds, and nothing in strings or comments.
    source = Path(json.decoder.__file__).read_bytes()
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    expected = sorted(n.name for n in ast.walk(ast.parse(source)) if isinstance(n, kinds))
    assert sorted(_defined_names(source)) == expected
    tricky = (
        b'x = """\ndef in_string(): pass\n"""  # def in_comment\ny = \'class Nope\'\n'
        b"async def coro(): pass\n    class Inner:\n\tdef method(self): pass\ndef caf\xc3\xa9(): pass\n"
    )
    assert _defined_names(tricky) == ["coro", "Inner", "method"]


@pytest.mark.skipif(shakespeare_path() is None, reason="needs ../shared/corpora/tinyshakespeare.txt")
def test_shakespeare_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CORPUS_DIR", str(shakespeare_path().parent))
    out = tmp_path / "run"
    result = invoke(
        "train",
        "shakespeare",
        "--out",
        out,
        "--hidden",
        "64",
        "--layers",
        "1",
        "--batch-size",
        "16",
        "--seq-len",
        "32",
        "--max-steps",
        "60",
        "--eval-every",
        "30",
        "--lr",
        "0.01",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    blob = load_checkpoint(out / "best.pt")
    assert len(blob.vocab.to_list()) == 65
    assert blob.history[-1]["val_loss"] < 3.0  # well below uniform guessing, ln 65 = 4.17
    sample = invoke("sample", out, "--prime", "ROMEO:", "-n", "40", "--seed", "0")
    assert sample.exit_code == 0 and sample.stdout.startswith("ROMEO:")


# ---- real processes: pipes and signals ----------------------------------------------------------------
def _cli(*args):
    return [sys.executable, "-m", "charrnn", *map(str, args)]


@pytest.mark.parametrize("command", [["evaluate", "{run}", "{text}"], ["corpora"]])
def test_tables_to_a_closed_pipe_end_quietly(command, trained_run, small_text_file):
    args = [a.format(run=trained_run, text=small_text_file) for a in command]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first write
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stderr == b""


def test_help_to_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen(_cli("sample", "--help"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and stderr == b""


def test_closed_standard_streams(trained_run):
    closed_out = subprocess.run(
        " ".join(_cli("sample", trained_run, "-n", "5")) + " >&-", shell=True, capture_output=True
    )
    assert closed_out.returncode == 0 and b"Traceback" not in closed_out.stderr
    closed_in = subprocess.run(
        " ".join(_cli("evaluate", trained_run, "-")) + " <&-", shell=True, capture_output=True
    )
    assert closed_in.returncode == 1 and closed_in.stderr.count(b"\n") == 1, closed_in.stderr


def test_closed_pipe_ends_quietly(trained_run):
    proc = subprocess.Popen(
        _cli("sample", trained_run, "-n", "200000"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    head = proc.stdout.read(10)
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=120)
    assert len(head) == 10
    assert proc.returncode == 0, stderr
    assert stderr == b""


def _start_training(out, small_text_file):
    """A real `charrnn train` process, returned once it has written its first checkpoint."""
    proc = subprocess.Popen(
        _cli(
            "train",
            small_text_file,
            "--out",
            out,
            "--hidden",
            "32",
            "--layers",
            "1",
            "--max-time",
            "5m",
            "--eval-every",
            "20",
            "--batch-size",
            "4",
            "--seq-len",
            "16",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 90
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.1)
    return proc


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_and_exits_with_the_conventional_status(tmp_path, small_text_file, sig, status):
    out = tmp_path / "run"
    proc = _start_training(out, small_text_file)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    text = stderr.decode()
    assert proc.returncode == status, text
    assert stdout == b""
    assert f"{sig.name}: stopped at step" in text and "resume with: charrnn train" in text
    assert "Traceback" not in text
    step = load_checkpoint(out / "last.pt").progress.step
    assert step > 0 and f"stopped at step {step};" in text
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_second_ctrl_c_exits_at_once_leaving_whole_files(tmp_path, small_text_file):
    out = tmp_path / "run"
    proc = _start_training(out, small_text_file)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode()
    for name in ("last.pt", "best.pt"):
        load_checkpoint(out / name)  # whole and loadable whatever the second signal interrupted
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---- the recurrent family: every option trains, is saved, and is honoured by sample/evaluate/resume ----
FAMILY = [
    ["--cell", "peephole-lstm", "--dropout-mode", "locked", "--dropout", "0.1"],
    ["--cell", "rnn", "--input", "onehot", "--log-grad-norms"],
    ["--cell", "gru", "--dropout-mode", "variational", "--dropout", "0.1", "--recurrent-dropout", "0.3"],
    ["--weight-tying", "--embedding-dropout", "0.1", "--scheduled-sampling", "0:0.5"],
]


def _tiny_flags_without(*names: str) -> list[str]:
    """TINY_TRAIN_FLAGS less the named valued flags (and --quiet, to see the summary)."""
    flags = [f for f in TINY_TRAIN_FLAGS if f != "--quiet"]
    for name in names:
        at = flags.index(name)
        flags = flags[:at] + flags[at + 2 :]
    return flags


@pytest.mark.parametrize("options", FAMILY, ids=lambda o: " ".join(o))
def test_family_options_are_saved_and_honoured(options, tmp_path, small_text_file):
    out = tmp_path / "run"
    sized = "--weight-tying" in options or "--input" in options
    flags = _tiny_flags_without("--dropout", *(["--embedding"] if sized else []))
    trained = invoke("train", small_text_file, "--out", out, *flags, *options)
    assert trained.exit_code == 0, trained.output
    assert trained.stdout == ""
    blob = load_checkpoint(out / "last.pt")
    saved = {**blob.model_config.to_dict(), **blob.train_config.to_dict()}
    expected = {
        "--cell": ("cell", str),
        "--input": ("input", str),
        "--dropout-mode": ("dropout_mode", str),
        "--dropout": ("dropout", float),
        "--recurrent-dropout": ("recurrent_dropout", float),
        "--embedding-dropout": ("embedding_dropout", float),
    }
    for flag, (key, kind) in expected.items():
        if flag in options:
            assert saved[key] == kind(options[options.index(flag) + 1]), key
    if "--weight-tying" in options:
        assert saved["weight_tying"] and saved["embedding"] == saved["hidden"] == 32
        assert blob.weights["embed.weight"].data_ptr() == blob.weights["head.weight"].data_ptr()
    if "--input" in options:
        assert saved["embedding"] == len(blob.vocab.to_list()) and "embed.weight" not in blob.weights
    if "--scheduled-sampling" in options:
        assert saved["scheduled_sampling"] == [0.0, 0.5]
        assert "ss_rate" in json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    if "--log-grad-norms" in options:
        assert (out / "grad_norms.jsonl").is_file()
        assert "gradient reaching back" in trained.stderr

    sampled = invoke("sample", out, "--prime", "the ", "--length", "40", "--seed", "1")
    assert sampled.exit_code == 0 and sampled.stdout.startswith("the ") and len(sampled.stdout) == 45
    scored = invoke("evaluate", out, small_text_file, "--json")
    assert scored.exit_code == 0
    assert abs(json.loads(scored.stdout)["nats"] - blob.progress.best_val) < 0.5  # same model, other text

    resumed = invoke("train", small_text_file, "--resume", out, "--max-steps", "40", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    again = load_checkpoint(out / "last.pt")
    assert again.progress.step == 40 and again.model_config.to_dict() == blob.model_config.to_dict()


def test_family_options_change_on_resume_where_they_may(tmp_path, small_text_file):
    out = tmp_path / "run"
    assert invoke("train", small_text_file, "--out", out, *TINY_TRAIN_FLAGS).exit_code == 0
    changed = invoke(
        "train", small_text_file, "--resume", out, "--max-steps", "35",
        "--dropout-mode", "locked", "--embedding-dropout", "0.1",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert "--dropout-mode standard -> locked" in changed.stderr
    assert "--embedding-dropout 0.0 -> 0.1" in changed.stderr
    assert load_checkpoint(out / "last.pt").model_config.dropout_mode == "locked"
    for flags, name in ((["--input", "onehot"], "--input"), (["--weight-tying"], "--weight-tying")):
        refused = invoke("train", small_text_file, "--resume", out, "--max-steps", "40", *flags, "--quiet")
        assert refused.exit_code == 1 and f"{name} " in refused.stderr and "contradicts" in refused.stderr


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--weight-tying", "--embedding", "8"], "--weight-tying needs --embedding equal to --hidden"),
        (["--weight-tying", "--input", "onehot", "--embedding", "8"], "--input onehot has none"),
        (["--input", "onehot", "--embedding", "16"], "--input onehot has none"),
        (["--scheduled-sampling", "2"], "--scheduled-sampling '2'"),
        (["--scheduled-sampling", "0:x"], "START:END"),
    ],
)
def test_family_misuse_is_a_one_line_error(extra, expected, tmp_path, small_text_file):
    flags = _tiny_flags_without("--embedding") if "--embedding" in extra else TINY_TRAIN_FLAGS
    result = invoke("train", small_text_file, "--out", tmp_path / "run", *flags, *extra)
    assert result.exit_code == 1, result.output
    assert expected in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--dropout-mode", "zoneout"],
        ["--input", "bytes"],
        ["--recurrent-dropout", "1"],
        ["--embedding-dropout", "-0.2"],
        ["--cell", "peephole"],
    ],
)
def test_family_out_of_range_options_get_the_usage_box(extra, small_text_file):
    result = invoke("train", small_text_file, *extra)
    assert result.exit_code == 2 and "Invalid value" in result.stderr


def test_help_shows_the_defaults_written_in_brackets():
    """Rich reads "[default: 16]" as a markup tag and drops it unless the bracket is escaped."""
    shown = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "[default: 16]" in shown.output and "[default: 0.8]" in shown.output
