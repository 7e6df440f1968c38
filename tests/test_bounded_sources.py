"""Endless or binary streams (issue 21): standard input, pipes and devices are checked while they are read,
and their temporary copies stop while a margin of the disk is free and never outlive the process."""

from __future__ import annotations

import gc
import io
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

import charrnn.paths as paths
import charrnn.textstream as textstream
from charrnn.cli import app
from charrnn.corpus import encode_with_vocab, load_corpus
from charrnn.errors import BadInput, NoSpace
from charrnn.vocab import Vocabulary
from conftest import SMALL_TEXT, TINY_TRAIN_FLAGS

CHUNK = 4096
TEXT = b"plain text, and some more of it\n"
GIB = 1 << 30
has_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")


class Endless(io.RawIOBase):
    """A source that never ends, like /dev/zero (or ends after `end` bytes): `head`, then `fill` over and
    over. Counts the bytes pulled from it and fails the test past `limit`, so a reader that does not stop
    cannot run on; `on_read(self)` is called before each read."""

    def __init__(self, head: bytes, fill: bytes, limit: int, on_read=None, end: int | None = None):
        self.head, self.limit, self.pulled, self.on_read, self.end = head, limit, 0, on_read, end
        self.fill = fill * (CHUNK // len(fill) + 2)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = len(buffer) if self.end is None else min(len(buffer), self.end - self.pulled)
        if n <= 0:
            return 0
        if self.pulled + n > self.limit:
            raise AssertionError(f"{self.pulled + n} bytes pulled from an endless source, past {self.limit}")
        if self.on_read is not None:
            self.on_read(self)
        out = bytearray()
        while len(out) < n:
            pos = self.pulled + len(out)
            if pos < len(self.head):
                out += self.head[pos : pos + n - len(out)]
            else:
                start = (pos - len(self.head)) % (len(self.fill) // 2)
                out += self.fill[start : start + n - len(out)]
        buffer[:n] = out[:n]
        self.pulled += n
        return n


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch, tmp_path) -> Path:
    """4 KiB chunks, and a temporary folder of the test's own (returned) to look into."""
    monkeypatch.setattr(textstream, "CHUNK_BYTES", CHUNK)
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _stdin(monkeypatch, stream) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=stream))


def _open_in(folder: Path) -> list[str]:
    """The files inside `folder` that this process holds open (an unlinked one reads '... (deleted)')."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{folder}/"):
            found.append(target)
    return found


def _train(**settings):
    return load_corpus("-", **settings)


def _evaluate(level: str = "char", **settings):
    vocab = Vocabulary.for_bytes() if level == "byte" else Vocabulary.from_text(TEXT.decode())
    return encode_with_vocab("-", vocab, **settings)


# ---- (a) bad bytes and NULs are refused at the chunk they are in ------------------------------------------
@pytest.mark.parametrize("read", [_train, _evaluate])
@pytest.mark.parametrize(
    ("bad", "expected"),
    [(b"\x00", "looks binary .*NUL characters, the first at offset {k}"), (b"\xff", "0xff at offset {k}")],
)
def test_a_stream_is_refused_at_the_chunk_with_its_first_bad_byte(monkeypatch, read, bad, expected):
    k = 5 * CHUNK + 123
    head = (TEXT * (k // len(TEXT) + 1))[:k] + bad
    source = Endless(head, TEXT, limit=k + 3 * CHUNK)
    _stdin(monkeypatch, source)
    with pytest.raises(BadInput, match=expected.format(k=k)):
        read()
    assert source.pulled <= k + CHUNK  # the chunk holding offset k, and not one more


def test_an_endless_run_of_zeros_is_refused_at_once(monkeypatch):
    source = Endless(b"", b"\x00", limit=4 * CHUNK)
    _stdin(monkeypatch, source)
    with pytest.raises(BadInput, match="NUL characters, the first at offset 0"):
        load_corpus("-")
    assert source.pulled == CHUNK


def test_lossy_streams_are_read_as_lossy_files_are(monkeypatch, tmp_path):
    data = b"text\x00with a NUL\xff and a bad byte\n" * 50
    path = tmp_path / "nul.txt"
    path.write_bytes(data)
    with pytest.raises(BadInput, match="looks binary"):
        load_corpus(path)
    _stdin(monkeypatch, io.BytesIO(data))
    with pytest.raises(BadInput, match="looks binary"):
        load_corpus("-")
    from_file = load_corpus(path, lossy=True)
    _stdin(monkeypatch, io.BytesIO(data))
    from_stream = load_corpus("-", lossy=True)
    assert from_stream.vocab.decode(from_stream.ids) == from_file.vocab.decode(from_file.ids)
    assert "\x00" in from_stream.vocab.chars and "\ufffd" in from_stream.vocab.chars


def test_any_bytes_are_valid_at_the_byte_level(monkeypatch):
    data = bytes(range(256)) * 40
    _stdin(monkeypatch, io.BytesIO(data))
    assert load_corpus("-", level="byte").ids.numpy().tobytes() == data
    _stdin(monkeypatch, io.BytesIO(data))
    assert _evaluate(level="byte")[0].numpy().tobytes() == data


# ---- (b) the disk bound ------------------------------------------------------------------------------------
def _filling_disk(monkeypatch, checks_above_margin: int = 2) -> list[int]:
    """A 100 GiB file system (margin: 5 GiB) that looks checks_above_margin times with room, then full;
    a look each 4 chunks. Returns the list of looks."""
    looks = []

    def free_space(folder: Path) -> tuple[int, int]:
        looks.append(1)
        free = 6 * GIB if len(looks) <= checks_above_margin else 4 * GIB
        return free, 100 * GIB

    monkeypatch.setattr(paths, "free_space", free_space)
    monkeypatch.setattr(paths, "SPACE_CHECK_BYTES", 4 * CHUNK)
    return looks


@has_proc
@pytest.mark.parametrize(
    ("read", "level", "what"),
    [
        (_train, "char", "copying standard input"),
        (_train, "byte", "copying standard input"),
        (_evaluate, "char", "writing the encoded standard input"),
        (_evaluate, "byte", "copying standard input"),
    ],
)
def test_a_copy_stops_while_a_margin_of_the_disk_is_free(monkeypatch, small_chunks, read, level, what):
    looks = _filling_disk(monkeypatch)
    source = Endless(b"", b"\x00" if level == "byte" else TEXT, limit=64 * CHUNK)
    _stdin(monkeypatch, source)
    with pytest.raises(NoSpace) as stopped:
        read(level=level)
    message = str(stopped.value)
    assert message.startswith(f"stopped {what} in {small_chunks} after 48.0 KiB: only 4.0 GiB is free")
    assert "leaves 5.0 GiB free (the larger of 1 GiB and 5% of the file system)" in message
    assert message.endswith("set TMPDIR to a folder with more free space") and "\n" not in message
    assert len(looks) == 3 and source.pulled == 12 * CHUNK  # it stopped at the third look
    assert os.listdir(small_chunks) == [] and _open_in(small_chunks) == []  # the partial copy is gone


def test_a_small_input_fits_even_on_a_nearly_full_disk(monkeypatch):
    looks = _filling_disk(monkeypatch, checks_above_margin=0)
    _stdin(monkeypatch, io.BytesIO(TEXT * 100))  # under the 4 chunks between looks
    assert len(load_corpus("-")) == len(TEXT) * 100 and looks == []


def test_the_margin_is_the_larger_of_1_gib_and_5_percent():
    assert paths.space_margin(10 * GIB) == GIB
    assert paths.space_margin(100 * GIB) == 5 * GIB


# ---- the spool has no name: nothing to leave behind -------------------------------------------------------
@has_proc
def test_the_spool_has_no_name_while_it_is_written(monkeypatch, small_chunks):
    seen = []

    def look(source: Endless) -> None:
        if source.pulled == 4 * CHUNK:
            seen.append((os.listdir(small_chunks), _open_in(small_chunks)))

    data = TEXT * (10 * CHUNK // len(TEXT))
    _stdin(monkeypatch, Endless(data, TEXT, limit=len(data) + CHUNK, on_read=look, end=len(data)))
    corpus = load_corpus("-")
    assert corpus.vocab.decode(corpus.ids) == data.decode()
    ((names, held),) = seen
    assert names == [] and len(held) == 1  # held open, never named: kill -9 leaves nothing
    assert os.listdir(small_chunks) == [] and len(_open_in(small_chunks)) == 1  # the token file's mapping
    del corpus
    gc.collect()
    assert _open_in(small_chunks) == []  # the spool went with its descriptor, the token file with its map


@has_proc
def test_ctrl_c_while_copying_leaves_nothing(monkeypatch, small_chunks):
    def interrupt(source: Endless) -> None:
        if source.pulled == 6 * CHUNK:
            raise KeyboardInterrupt

    _stdin(monkeypatch, Endless(b"", TEXT, limit=64 * CHUNK, on_read=interrupt))
    with pytest.raises(KeyboardInterrupt):
        load_corpus("-")
    assert os.listdir(small_chunks) == [] and _open_in(small_chunks) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_of_zeros_is_refused_without_reading_it_all(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    written = []

    def write() -> None:
        try:
            with open(fifo, "wb", buffering=0) as f:
                for _ in range(256):  # at most 1 MiB
                    f.write(bytes(CHUNK))
                    written.append(CHUNK)
        except BrokenPipeError:  # the reader stopped and closed its end
            pass

    writer = threading.Thread(target=write)
    writer.start()
    with pytest.raises(BadInput, match=f"{fifo} looks binary"):
        load_corpus(fifo)
    writer.join(timeout=5)
    assert not writer.is_alive() and sum(written) < 1 << 20


# ---- (c) end to end: one line on stderr, exit status 1 ----------------------------------------------------
runner = CliRunner()


def _invoke(*args, input: bytes):
    return runner.invoke(app, [str(a) for a in args], input=input)


def _one_line_error(result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr and "Traceback" not in result.output


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny run, trained on one thread: on a busy 2-core machine two threads wait on each other."""
    run = tmp_path_factory.mktemp("bounded") / "run"
    flags = list(TINY_TRAIN_FLAGS)
    flags[flags.index("--max-steps") + 1] = "2"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trained = _invoke("train", "-", "--out", run, *flags, input=SMALL_TEXT.encode())
    finally:
        torch.set_num_threads(threads)
    assert trained.exit_code == 0, trained.output
    return run


def test_cli_refuses_binary_standard_input(tmp_path, checkpoint):
    text = TEXT * 100
    trained = _invoke("train", "-", "--out", tmp_path / "run", *TINY_TRAIN_FLAGS, input=text + bytes(CHUNK))
    nul = f"standard input looks binary (it contains NUL characters, the first at offset {len(text)})"
    _one_line_error(trained, nul)
    assert not (tmp_path / "run" / "last.pt").exists()
    bad = text + b"\xff" + SMALL_TEXT.encode()
    scored = _invoke("evaluate", checkpoint, "-", input=bad)
    _one_line_error(scored, f"standard input is not valid utf-8: byte 0xff at offset {len(text)}")


def test_cli_stops_a_copy_that_would_fill_the_disk(tmp_path, monkeypatch, checkpoint, small_chunks):
    _filling_disk(monkeypatch)
    data = SMALL_TEXT.encode() * 20  # about 30 chunks: the third look, after 12, stops it
    trained = _invoke("train", "-", "--out", tmp_path / "run", *TINY_TRAIN_FLAGS, input=data)
    _one_line_error(trained, "set TMPDIR to a folder with more free space")
    assert "stopped copying standard input" in trained.stderr and "1 GiB and 5%" in trained.stderr
    _filling_disk(monkeypatch)
    scored = _invoke("evaluate", checkpoint, "-", input=data)
    _one_line_error(scored, "set TMPDIR to a folder with more free space")
    assert os.listdir(small_chunks) == []


# ---- texts read whole: a prime, the text `novelty` checks ------------------------------------------------
def test_a_text_read_into_memory_is_bounded_whatever_the_source(monkeypatch, tmp_path):
    import charrnn.corpus as corpus

    read, write = os.pipe()  # a pipe: its size says nothing, so it must be read with a bound
    with os.fdopen(write, "wb") as w:
        w.write(b"abc" * 1000)
    assert corpus.read_input_bytes(f"/dev/fd/{read}", limit=10_000) == bytearray(b"abc" * 1000)
    with pytest.raises(BadInput, match="longer than"):
        corpus.read_input_bytes("/dev/zero", limit=4096)  # endless: refused, not read forever
    monkeypatch.setattr(corpus, "MAX_IN_MEMORY_BYTES", 2048)
    result = CliRunner().invoke(app, ["novelty", "-", str(tmp_path / "nowhere.txt")], input=b"x" * 5000)
    assert result.exit_code == 1 and "standard input is longer than" in result.output
    assert "Traceback" not in result.output


def test_an_endless_lossy_stream_of_unknown_characters_is_refused(monkeypatch):
    """`evaluate CKPT /dev/zero --lossy` read forever: --lossy keeps NULs, which no model knows."""
    import charrnn.corpus as corpus

    monkeypatch.setattr(corpus, "UNKNOWN_ONLY_LIMIT", 3 * CHUNK)
    source = Endless(b"", b"\x00", limit=8 * CHUNK)
    _stdin(monkeypatch, source)
    with pytest.raises(BadInput, match="are all outside the model's vocabulary"):
        _evaluate(lossy=True)
    assert source.pulled <= 4 * CHUNK
