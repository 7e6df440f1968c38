"""Token files, streaming encoding, folder and glob corpora, the byte level (the big-corpora issue)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import charrnn.textstream as textstream
from charrnn.corpus import encode_with_vocab, load_corpus
from charrnn.errors import CharrnnError
from charrnn.sources import FILE_SEPARATOR
from charrnn.tokens import DamagedTokenFile, open_token_file
from charrnn.vocab import Vocabulary
from conftest import REPO

MIXED = "naïve café — 東京 🙂 Здравствуй\nplain ascii line\n" * 50


def _decoded(corpus) -> str:
    return corpus.vocab.decode(corpus.ids)


def _token_files(cache) -> list:
    return sorted((cache / "tokens").glob("*.tok"))


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_chunk_boundaries_inside_multibyte_characters(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(textstream, "CHUNK_BYTES", chunk)
    path = tmp_path / "mixed.txt"
    path.write_text(MIXED, encoding="utf-8")
    corpus = load_corpus(path)
    assert _decoded(corpus) == MIXED
    assert corpus.vocab == Vocabulary.from_text(MIXED)


def test_bad_byte_offset_is_exact_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(textstream, "CHUNK_BYTES", 16)
    good = "東京 café ".encode() * 30  # 14 bytes a repeat: multi-byte characters straddle the chunks
    path = tmp_path / "bad.txt"
    path.write_bytes(good + b"\xff tail")
    with pytest.raises(CharrnnError, match=f"byte 0xff at offset {len(good)}"):
        load_corpus(path)
    path.write_bytes(good + "東".encode()[:2])  # cut short at the very end
    with pytest.raises(CharrnnError, match=f"at offset {len(good)}"):
        load_corpus(path)


def test_each_id_dtype(tmp_path):
    for size, dtype in ((200, torch.uint8), (300, torch.uint16), (70_000, torch.uint32)):
        chars = [chr(c) for c in range(0x100, 0x100 + size + 2048) if not 0xD800 <= c < 0xE000][:size]
        text = "".join(chars) + "".join(reversed(chars))
        path = tmp_path / f"v{size}.txt"
        path.write_text(text, encoding="utf-8")
        corpus = load_corpus(path)
        assert corpus.ids.dtype == dtype and len(corpus.vocab) == size
        assert _decoded(corpus) == text
        assert corpus.ids[-1].item() == 0 and corpus.ids[size - 1].item() == size - 1


def test_corpus_ids_are_a_memory_map_of_the_cached_token_file(small_text_file, isolated_cache):
    corpus = load_corpus(small_text_file)
    (token_file,) = _token_files(isolated_cache)
    address = corpus.ids.data_ptr()
    mapped = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(token_file):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            mapped.append(start <= address < end)
    assert any(mapped)  # the ids are read from the file's pages, not copied into memory
    header_tokens = open_token_file(token_file)
    assert header_tokens.fingerprint == corpus.fingerprint
    # the stored fingerprint is the SHA-256 of the ids: what --resume checks, without reading the corpus
    import hashlib

    assert corpus.fingerprint == hashlib.sha256(corpus.ids.numpy().tobytes()).hexdigest()


def test_cache_follows_changes_even_with_the_same_size_and_time(small_text_file, isolated_cache):
    load_corpus(small_text_file)
    st = small_text_file.stat()
    changed = small_text_file.read_text(encoding="utf-8").replace("cat", "cot")
    small_text_file.write_text(changed, encoding="utf-8")
    os.utime(small_text_file, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    assert _decoded(load_corpus(small_text_file)) == changed
    assert len(_token_files(isolated_cache)) == 1  # the new encoding replaced the stale one
    assert len(load_corpus(small_text_file, encoding="latin-1").vocab) > 0  # settings are part of the key
    assert len(_token_files(isolated_cache)) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-7],  # truncated
        lambda data: data[:100],  # cut inside the header
        lambda data: b"garbage" + data[7:],  # foreign
        lambda data: data + b"\x00",  # longer than its header says
    ],
)
def test_damaged_token_file_is_reported_and_rebuilt(small_text_file, isolated_cache, damage):
    first = load_corpus(small_text_file)
    expected = _decoded(first)
    del first
    (token_file,) = _token_files(isolated_cache)
    with pytest.raises(DamagedTokenFile):
        damaged = damage(token_file.read_bytes())
        token_file.write_bytes(damaged)
        open_token_file(token_file)
    notes = []
    again = load_corpus(small_text_file, report=notes.append)
    assert _decoded(again) == expected
    assert len(notes) == 1 and "damaged" in notes[0] and "rebuilding" in notes[0]
    open_token_file(token_file)  # whole again


def test_concurrent_encoders_both_succeed(tmp_path, isolated_cache):
    path = tmp_path / "big.txt"
    path.write_text(MIXED * 400, encoding="utf-8")  # about 1.4 MB
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]); from charrnn.corpus import load_corpus; "
        "c = load_corpus(sys.argv[1]); print(len(c), c.fingerprint)"
    )
    env = {**os.environ, "CHARRNN_CACHE_DIR": str(isolated_cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(REPO)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outputs)) == 1
    assert len(_token_files(isolated_cache)) == 1
    assert not list((isolated_cache / "tokens").glob(".*.tmp"))  # no temporary file left behind


def test_unwritable_cache_folder_still_trains(tmp_path, small_text_file, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(blocker / "cache"))  # mkdir fails, even for root
    notes = []
    corpus = load_corpus(small_text_file, report=notes.append)
    assert _decoded(corpus) == small_text_file.read_text(encoding="utf-8")
    assert len(notes) == 1 and "CHARRNN_CACHE_DIR" in notes[0]


def test_full_cache_disk_falls_back_to_a_temporary_file(small_text_file, isolated_cache, monkeypatch):
    import charrnn.corpus

    real_write = charrnn.corpus.write_token_file

    def disk_full_in_cache(path, *args, **kwargs):
        if str(path).startswith(str(isolated_cache)):
            raise OSError(28, "No space left on device")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(charrnn.corpus, "write_token_file", disk_full_in_cache)
    notes = []
    corpus = load_corpus(small_text_file, report=notes.append)
    assert len(corpus) == len(small_text_file.read_text(encoding="utf-8"))
    assert "No space left" in notes[0]
    assert not _token_files(isolated_cache)


def _make_tree(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.txt").write_text("bee text\n", encoding="utf-8")
    (root / "a.py").write_text("print('a')\n", encoding="utf-8")
    (root / "sub" / "c.py").write_text("x = 'ç'\n", encoding="utf-8")
    (root / "sub" / "deeper" / "d.md").write_text("# dee", encoding="utf-8")
    (root / "sub" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (root / "sub" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / ".git" / "config").write_text("[core]\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("secret\n", encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")


def test_folder_corpus_reads_sorted_text_files_with_separators(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    _make_tree(root)
    notes = []
    corpus = load_corpus(root, report=notes.append)
    sep = FILE_SEPARATOR
    expected = "print('a')\n" + sep + "bee text\n" + sep + "x = 'ç'\n" + sep + "# dee" + sep
    assert _decoded(corpus) == expected  # a.py, b.txt, sub/c.py, sub/deeper/d.md: sorted paths
    assert corpus.name == "tree"
    assert notes == ["note: skipped 2 of 6 files: 1 not utf-8 text, 1 binary (first: sub/latin1.txt)"]
    only_py = load_corpus(root, include=["*.py"])
    assert _decoded(only_py) == "print('a')\n" + sep + "x = 'ç'\n" + sep
    no_sub = load_corpus(root, exclude=["sub/*"])
    assert _decoded(no_sub) == "print('a')\n" + sep + "bee text\n" + sep
    with pytest.raises(CharrnnError, match="no file that --include/--exclude keep"):
        load_corpus(root, include=["*.rs"])


def test_folder_cache_key_covers_the_file_list(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    _make_tree(root)
    before = _decoded(load_corpus(root))
    (root / "sub" / "e.txt").write_text("new file\n", encoding="utf-8")
    after = _decoded(load_corpus(root))
    assert after != before and "new file" in after


def test_glob_corpus(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    _make_tree(root)
    monkeypatch.chdir(tmp_path)
    corpus = load_corpus("tree/**/*.py")
    assert _decoded(corpus) == "print('a')\n" + FILE_SEPARATOR + "x = 'ç'\n" + FILE_SEPARATOR
    with pytest.raises(CharrnnError, match="matches no file"):
        load_corpus("tree/**/*.rs")
    with pytest.raises(CharrnnError, match="--include and --exclude filter folder and glob"):
        load_corpus(root / "a.py", include=["*.py"])


def test_folder_of_binary_files_is_refused(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x00\x01" * 10)
    (tmp_path / "b.bin").write_bytes(b"\xff\xfe" * 10)
    with pytest.raises(CharrnnError, match="holds no usable text file"):
        load_corpus(tmp_path)


def test_byte_level_takes_any_bytes(tmp_path):
    data = b"caf\xc3\xa9 \xff\xfe broken \xe6\x9d middle\n" * 20
    path = tmp_path / "bytes.bin"
    path.write_bytes(data)
    with pytest.raises(CharrnnError, match="not valid utf-8"):
        load_corpus(path)
    corpus = load_corpus(path, level="byte")
    assert corpus.vocab.is_bytes and len(corpus.vocab) == 256
    assert corpus.ids.numpy().tobytes() == data
    with pytest.raises(CharrnnError, match="--encoding has no effect with --level byte"):
        load_corpus(path, level="byte", encoding="latin-1")
    with pytest.raises(CharrnnError, match="--lossy has no effect"):
        load_corpus(path, level="byte", lossy=True)


def test_byte_level_folder_skips_binary_files(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    _make_tree(root)
    corpus = load_corpus(root, level="byte")
    raw = corpus.ids.numpy().tobytes()
    assert "caf\xe9".encode("latin-1") in raw  # not UTF-8, but bytes are bytes
    assert b"PNG" not in raw


def test_encode_with_vocab_streams_and_counts_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(textstream, "CHUNK_BYTES", 5)
    vocab = Vocabulary.from_text("abc é\n")
    path = tmp_path / "t.txt"
    path.write_text("abc é\nabXc 東é\n", encoding="utf-8")
    ids, unknown = encode_with_vocab(path, vocab)
    assert unknown == 2
    assert vocab.decode(ids) == "abc é\nabc é\n"


# ---- end to end through the command line ----------------------------------------------------------------
from typer.testing import CliRunner  # noqa: E402

from charrnn.checkpoint import load_checkpoint  # noqa: E402
from charrnn.cli import app  # noqa: E402
from conftest import TINY_TRAIN_FLAGS  # noqa: E402

runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def _weights(path):
    return load_checkpoint(path).weights


def _same_weights(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


INVALID_UTF8 = (b"caf\xc3\xa9 \xff\xfe broken \xe6\x9d middle; \xf0\x9f\x99\x82 ok\n" * 60) + b"end \xc3"


def test_byte_level_end_to_end(tmp_path):
    path = tmp_path / "bytes.txt"
    path.write_bytes(INVALID_UTF8)
    refused = invoke("train", path, "--out", tmp_path / "no", *TINY_TRAIN_FLAGS)
    assert refused.exit_code == 1 and "not valid utf-8" in refused.stderr
    run = tmp_path / "run"
    trained = invoke("train", path, "--level", "byte", "--out", run, *TINY_TRAIN_FLAGS)
    assert trained.exit_code == 0, trained.output
    blob = load_checkpoint(run / "last.pt")
    assert blob.level == "byte" and len(blob.vocab.to_list()) == 256
    sampled = invoke("sample", run, "--prime", "café 🙂", "-n", "40", "--seed", "1")
    assert sampled.exit_code == 0, sampled.output
    assert sampled.stdout.startswith("café 🙂")
    scored = invoke("evaluate", run, path, "--json")
    assert scored.exit_code == 0, scored.output
    result = json.loads(scored.stdout)
    assert result["unit"] == "byte" and result["chars"] == len(INVALID_UTF8) - 1 and result["unknown"] == 0
    assert result["bpb"] == result["bpc"]
    table = invoke("evaluate", run, path)
    assert "bits per byte" in table.stdout and "bytes scored" in table.stdout
    with_encoding = invoke("evaluate", run, path, "--encoding", "latin-1")
    assert (
        with_encoding.exit_code == 1 and "--encoding has no effect with --level byte" in with_encoding.stderr
    )
    # resume keeps the level; asking for the other one is refused
    flags = ["--max-steps", "40", "--quiet"]
    contradicted = invoke("train", path, "--resume", run, "--level", "char", *flags)
    assert contradicted.exit_code == 1 and "--level char contradicts the checkpoint" in contradicted.stderr
    resumed = invoke("train", path, "--resume", run, *flags)
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run / "last.pt").progress.step == 40


def _train_flags(steps: int) -> list[str]:
    flags = list(TINY_TRAIN_FLAGS)
    flags[flags.index("--max-steps") + 1] = str(steps)
    return flags


def test_resume_on_a_memory_mapped_corpus_is_exact(tmp_path, small_text_file):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert invoke("train", small_text_file, "--out", straight, *_train_flags(30)).exit_code == 0
    assert invoke("train", small_text_file, "--out", split, *_train_flags(20)).exit_code == 0
    resumed = invoke("train", small_text_file, "--resume", split, "--max-steps", "30", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert _same_weights(_weights(straight / "last.pt"), _weights(split / "last.pt"))


def test_validation_cap_is_logged_and_applied(tmp_path, small_text_file):
    run = tmp_path / "run"
    result = invoke("train", small_text_file, "--out", run, "--val-chars", "100", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert entries and all(e["val_chars"] == 99 for e in entries)
    whole = invoke(
        "train", small_text_file, "--out", tmp_path / "whole", "--val-chars", "0", *TINY_TRAIN_FLAGS
    )
    assert whole.exit_code == 0
    line = (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["val_chars"] == int(len(small_text_file.read_text(encoding="utf-8")) * 0.1) - 1


def test_folder_and_glob_corpora_train(tmp_path, monkeypatch):
    root = tmp_path / "src"
    root.mkdir()
    _make_tree(root)
    for i in range(20):
        (root / "sub" / f"m{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n" * 20, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    by_folder = invoke("train", "src", "--include", "*.py", *TINY_TRAIN_FLAGS)
    assert by_folder.exit_code == 0, by_folder.output
    assert (tmp_path / "checkpoints" / "src" / "best.pt").exists()
    by_glob = invoke("train", "src/**/*.py", "--out", "runs/glob", *TINY_TRAIN_FLAGS)
    assert by_glob.exit_code == 0, by_glob.output
    assert (
        load_checkpoint(tmp_path / "runs/glob/last.pt").corpus.sha256
        == load_checkpoint(tmp_path / "checkpoints/src/last.pt").corpus.sha256
    )  # the same files in the same order: the same text
    nothing = invoke("train", "src/**/*.rs", "--out", "runs/none", *TINY_TRAIN_FLAGS)
    assert nothing.exit_code == 1 and "matches no file" in nothing.stderr


def test_evaluate_streams_a_file_like_the_in_memory_scorer(tmp_path, small_text_file, monkeypatch):
    from charrnn.checkpoint import model_from_checkpoint
    from charrnn.evaluate import score_text

    run = tmp_path / "run"
    assert invoke("train", small_text_file, "--out", run, *TINY_TRAIN_FLAGS).exit_code == 0
    text = small_text_file.read_text(encoding="utf-8") + "unknown: ЖЖ\n"
    path = tmp_path / "eval.txt"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(textstream, "CHUNK_BYTES", 100)
    result = json.loads(invoke("evaluate", run, path, "--json").stdout)
    model, vocab = model_from_checkpoint(load_checkpoint(run))
    expected = score_text(model, vocab, text)
    assert result["unknown"] == expected.unknown >= 2 and result["chars"] == expected.chars
    assert abs(result["nats"] - expected.nats) < 1e-6
    from_stdin = json.loads(invoke("evaluate", run, "-", "--json", input=text.encode()).stdout)
    assert from_stdin["nats"] == result["nats"]


def test_evaluation_stops_at_a_signal_and_resume_is_exact(tmp_path, small_text_file, monkeypatch):
    """SIGTERM during an evaluation stops it between chunks, saves last.pt as after a step, and the resumed
    run ends with the same weights as one never interrupted."""
    import signal

    import charrnn.evaluate
    import charrnn.train

    straight = tmp_path / "straight"
    assert invoke("train", small_text_file, "--out", straight, *_train_flags(30)).exit_code == 0
    real = charrnn.evaluate.score_sums
    calls = []

    def signalled(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the evaluation at step 20
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(charrnn.train, "score_sums", signalled)
    run = tmp_path / "run"
    stopped = invoke("train", small_text_file, "--out", run, *_train_flags(30))
    assert stopped.exit_code == 143, stopped.output
    assert load_checkpoint(run / "last.pt").progress.step == 20
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # the interrupted one is not logged
    monkeypatch.setattr(charrnn.train, "score_sums", real)
    resumed = invoke("train", small_text_file, "--resume", run, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert _same_weights(_weights(straight / "last.pt"), _weights(run / "last.pt"))
    straight_log = (straight / "metrics.jsonl").read_text().splitlines()
    run_log = (run / "metrics.jsonl").read_text().splitlines()
    # the interrupted evaluation at step 20 was redone first on resume, with the training loss it had
    for mine, theirs in zip(run_log, straight_log, strict=True):
        mine, theirs = json.loads(mine), json.loads(theirs)
        assert (mine["step"], mine["train_loss"], mine["val_loss"], mine["lr"]) == (
            theirs["step"],
            theirs["train_loss"],
            theirs["val_loss"],
            theirs["lr"],
        )


def test_stdin_corpus_is_streamed(tmp_path):
    run = tmp_path / "run"
    result = invoke("train", "-", "--out", run, *TINY_TRAIN_FLAGS, input=MIXED.encode())
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "last.pt").corpus.chars == len(MIXED)


# ---- what the review of the first version found --------------------------------------------------------
def test_altered_ids_are_caught_by_range_and_checksum(small_text_file, isolated_cache):
    expected = _decoded(load_corpus(small_text_file))
    (token_file,) = _token_files(isolated_cache)
    data = bytearray(token_file.read_bytes())
    size = len(data)
    for new_id in (250, 3):  # outside the vocabulary, then another valid id: same size, same header
        data[-10] = new_id if data[-10] != new_id else new_id + 1
        token_file.write_bytes(bytes(data))
        assert token_file.stat().st_size == size
        with pytest.raises(DamagedTokenFile, match="outside its|checksum"):
            open_token_file(token_file)
        notes = []
        assert _decoded(load_corpus(small_text_file, report=notes.append)) == expected
        assert "damaged" in notes[0]
        data = bytearray(token_file.read_bytes())


def test_damaged_entry_in_a_read_only_cache_falls_back(small_text_file, isolated_cache, monkeypatch):
    load_corpus(small_text_file)
    (token_file,) = _token_files(isolated_cache)
    token_file.write_bytes(token_file.read_bytes()[:-3])
    real_unlink = Path.unlink

    def refuse(self, *args, **kwargs):  # chattr +i, without needing it
        if self.suffix == ".tok":
            raise PermissionError(1, "Operation not permitted", str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    notes = []
    corpus = load_corpus(small_text_file, report=notes.append)
    assert _decoded(corpus) == small_text_file.read_text(encoding="utf-8")
    assert "damaged" in notes[0] and "CHARRNN_CACHE_DIR" in notes[1]


def test_sigterm_while_encoding_leaves_no_temporary_file(tmp_path, isolated_cache, monkeypatch):
    import signal

    import charrnn.corpus
    from charrnn.corpus import Terminated

    path = tmp_path / "t.txt"
    path.write_text(MIXED * 20, encoding="utf-8")
    monkeypatch.setattr(textstream, "CHUNK_BYTES", 256)
    real = charrnn.corpus.IdMapper.__call__
    calls = []

    def terminated_midway(self, points):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, points)

    monkeypatch.setattr(charrnn.corpus.IdMapper, "__call__", terminated_midway)
    with pytest.raises(Terminated):
        load_corpus(path)
    assert list((isolated_cache / "tokens").iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_stale_temporary_files_and_replaced_entries_are_swept(small_text_file, isolated_cache):
    load_corpus(small_text_file)
    folder = isolated_cache / "tokens"
    stale, fresh = folder / ".x.tok.abc.tmp", folder / ".y.tok.def.tmp"
    stale.write_bytes(b"left by a killed encoder")
    fresh.write_bytes(b"another encoder at work")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    small_text_file.write_text("changed text " * 100, encoding="utf-8")
    load_corpus(small_text_file)
    assert not stale.exists() and fresh.exists()
    assert len(_token_files(isolated_cache)) == 1


def test_links_never_repeat_a_file(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "x.txt").write_text("only once\n", encoding="utf-8")
    (root / "sub" / "up").symlink_to("..")  # a loop
    (root / "linkdir").symlink_to("sub")
    (root / "linkfile.txt").symlink_to("sub/x.txt")
    expected = "only once\n" + FILE_SEPARATOR
    assert _decoded(load_corpus(root)) == expected
    monkeypatch.chdir(tmp_path)
    assert _decoded(load_corpus("tree/**/*.txt")) == expected


def test_unreadable_files_in_a_folder_are_skipped_and_named(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a.txt").write_text("readable\n", encoding="utf-8")
    (root / "secret.txt").write_text("hidden\n", encoding="utf-8")
    real_open = open

    def denied(path, *args, **kwargs):  # chmod 000 does not stop root
        if str(path).endswith("secret.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(textstream, "open", denied, raising=False)
    for level in ("char", "byte"):
        notes = []
        corpus = load_corpus(root, level=level, report=notes.append)
        assert corpus.vocab.decode(corpus.ids) == "readable\n" + FILE_SEPARATOR
        assert notes == ["note: skipped 1 of 2 files: 1 unreadable (first: secret.txt)"]


def test_lossy_folder_still_skips_binary_files(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a.txt").write_text("text\n", encoding="utf-8")
    (root / "b.dat").write_bytes(b"\x00\x01\x02\xff" * 10)
    corpus = load_corpus(root, lossy=True)
    assert corpus.vocab.decode(corpus.ids) == "text\n" + FILE_SEPARATOR
    (root / "a.txt").unlink()
    with pytest.raises(CharrnnError, match=r"1 skipped: 1 binary\); check the files"):
        load_corpus(root, lossy=True)


def test_a_pipe_is_read_once_like_standard_input(tmp_path):
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w", encoding="utf-8") as f:
            f.write(MIXED)

    for load in (
        lambda: _decoded(load_corpus(fifo)),
        lambda: _decoded(load_corpus(fifo, level="byte")),
    ):
        writer = threading.Thread(target=write)
        writer.start()
        assert load() == MIXED
        writer.join()
    writer = threading.Thread(target=write)
    writer.start()
    ids, unknown = encode_with_vocab(fifo, Vocabulary.for_bytes())
    writer.join()
    assert ids.numpy().tobytes() == MIXED.encode() and unknown == 0


def test_byte_level_reports_speak_of_bytes(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(INVALID_UTF8)
    run = tmp_path / "run"
    flags = [f for f in TINY_TRAIN_FLAGS if f != "--quiet"]
    trained = invoke("train", path, "--level", "byte", "--out", run, *flags)
    assert trained.exit_code == 0, trained.output
    assert "nats/byte" in trained.stderr and "bits per byte" in trained.stderr and "bytes/s" in trained.stderr
    one = tmp_path / "one.bin"
    one.write_bytes(b"x")
    short = invoke("evaluate", run, one)
    assert short.exit_code == 1 and "at least 2 bytes" in short.stderr


def test_val_chars_below_two_is_refused(small_text_file):
    result = invoke("train", small_text_file, "--val-chars", "1", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 2 and "must be 0 (all) or at least 2" in result.output
