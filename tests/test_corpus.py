import pytest
import torch

from charrnn.corpus import load_text_file
from charrnn.errors import CharrnnError


def test_utf8_file_loads_and_splits(small_text_file):
    corpus = load_text_file(small_text_file)
    text = small_text_file.read_text(encoding="utf-8")
    assert corpus.vocab.decode(corpus.ids) == text
    train, val = corpus.split(0.1)
    assert len(val) == int(len(text) * 0.1)
    assert torch.equal(torch.cat([train, val]), corpus.ids)


def test_invalid_utf8_names_the_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello world " * 3 + b"\xff\xfe tail")
    with pytest.raises(CharrnnError) as e:
        load_text_file(path)
    message = str(e.value)
    assert "offset 36" in message and "0xff" in message
    assert "--encoding" in message and "--lossy" in message


def test_lossy_and_other_encodings(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café crème".encode("latin-1"))
    assert "\ufffd" in load_text_file(path, lossy=True).vocab.chars
    corpus = load_text_file(path, encoding="latin-1")
    assert corpus.vocab.decode(corpus.ids) == "café crème"


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "holds no files"),
        (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
        (lambda p: (p.write_bytes(b"\x7fELF\x00\x00\x01binary"), p)[1], "looks binary"),
    ],
)
def test_bad_corpus_files(tmp_path, make, expected):
    path = make(tmp_path / "corpus.txt")
    with pytest.raises(CharrnnError, match=expected):
        load_text_file(path)


def test_unknown_encoding_is_a_clear_error(small_text_file):
    with pytest.raises(CharrnnError, match="unknown text encoding"):
        load_text_file(small_text_file, encoding="no-such-codec")


def test_second_load_comes_from_the_cache(small_text_file, isolated_cache):
    first = load_text_file(small_text_file)
    cached = list((isolated_cache / "tokens").glob("*.tok"))
    assert len(cached) == 1
    second = load_text_file(small_text_file)
    assert torch.equal(first.ids, second.ids) and first.vocab == second.vocab
    # a changed file is a new cache entry, not a stale hit
    small_text_file.write_text("something else entirely", encoding="utf-8")
    third = load_text_file(small_text_file)
    assert third.vocab.decode(third.ids) == "something else entirely"


def test_corpora_readme_describes_every_registered_corpus():
    from charrnn.named_corpora import CORPORA
    from conftest import REPO

    readme = (REPO / "corpora" / "README.md").read_text(encoding="utf-8")
    for corpus in CORPORA.values():
        assert f"`{corpus.name}`" in readme
        assert corpus.licence in readme
        if corpus.sha256:
            assert corpus.sha256 in readme and corpus.source in readme and f"{corpus.size:,}" in readme


def test_shakespeare_from_a_local_folder_is_verified(tmp_path, monkeypatch):
    from charrnn.named_corpora import corpus_path

    monkeypatch.setenv("CHARRNN_CORPUS_DIR", str(tmp_path))
    (tmp_path / "tinyshakespeare.txt").write_text("not the real text")
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(CharrnnError, match="cannot download"):
        corpus_path("shakespeare")  # a copy with the wrong checksum is not used
