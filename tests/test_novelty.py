"""`charrnn novelty`: the suffix array, the matching statistics and the report are exact (issue 12)."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from typer.testing import CliRunner

import charrnn.novelty as nv
from charrnn.cli import app
from charrnn.vocab import Vocabulary

runner = CliRunner()
ALPHABET = "abcdefghijklmnopqrstuvwxyz      \n.,"


def _random_text(seed: int, size: int, alphabet: str = ALPHABET) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(size))


def _run(*args: str, input: str | None = None):
    return runner.invoke(app, ["novelty", *args], input=input)


def _json(*args: str, input: str | None = None) -> dict:
    result = _run(*args, "--json", input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _brute_longest(text: str, corpus: str, i: int) -> int:
    length = 0
    while i + length < len(text) and text[i : i + length + 1] in corpus:
        length += 1
    return length


@pytest.mark.parametrize("seed", range(6))
def test_suffix_array_is_sorted_suffixes(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    if seed % 2:
        monkeypatch.setattr(nv, "SORT_CHUNK", 3)  # many chunks, groups longer than a chunk
    ids = rng.integers(0, 1 + seed % 3, size=int(rng.integers(1, 400))).astype(np.uint8)
    expected = sorted(range(ids.size), key=lambda i: ids[i:].tolist())
    assert nv.suffix_array(ids, 3).tolist() == expected


def test_suffix_array_of_wide_ids():
    ids = np.array([70000, 3, 70000, 3, 70000, 0], dtype=np.uint32)
    expected = sorted(range(ids.size), key=lambda i: ids[i:].tolist())
    assert nv.suffix_array(ids, 70001).tolist() == expected


@pytest.mark.parametrize("window", [1, 3, 64])
def test_matching_statistics_match_brute_force(window, monkeypatch):
    monkeypatch.setattr(nv, "WINDOW", window)
    for seed in range(8):
        corpus = _random_text(seed, 300, "abc")
        text = _random_text(100 + seed, 120, "abcd")  # d: outside the corpus, breaks matches
        vocab = Vocabulary(corpus)
        ids = vocab.encode(corpus).numpy()
        symbols, _ = nv.text_ids(text, vocab)
        ms, where = nv.matching_statistics(ids, nv.suffix_array(ids, len(vocab)), symbols)
        assert ms.tolist() == [_brute_longest(text, corpus, i) for i in range(len(text))]
        for i, length in enumerate(ms.tolist()):
            assert corpus[where[i] : where[i] + length] == text[i : i + length]


def test_kgram_shares_match_brute_force(tmp_path):
    corpus = _random_text(1, 2000, "abcde \n")
    text = corpus[500:560] + _random_text(2, 150, "abcdef \n") + corpus[1200:1230]
    (tmp_path / "c.txt").write_text(corpus)
    (tmp_path / "t.txt").write_text(text)
    ks = [1, 2, 5, 10, 20, 50, 100]
    report = _json(str(tmp_path / "t.txt"), str(tmp_path / "c.txt"), *[f"-k{k}" for k in ks])
    for k in ks:
        grams = [text[i : i + k] for i in range(len(text) - k + 1)]
        found = sum(g in corpus for g in grams)
        assert report["ngrams"][str(k)] == {"total": len(grams), "found": found, "share": found / len(grams)}


def test_copied_span_is_the_longest_with_its_offsets(tmp_path):
    corpus = _random_text(3, 20_000)
    span = corpus[7_321 : 7_321 + 300]
    text = _random_text(4, 1_000) + span + _random_text(5, 1_000)
    (tmp_path / "corpus.txt").write_text(corpus)
    (tmp_path / "text.txt").write_text(text)
    longest = _json(str(tmp_path / "text.txt"), str(tmp_path / "corpus.txt"))["longest"]
    assert longest["text"] == span  # random surroundings could extend it by a character or so: not here
    assert longest["length"] == 300
    assert longest["text_offset"] == 1_000
    assert longest["corpus_offset"] == 7_321
    assert longest["corpus_line"] == corpus[:7_321].count("\n") + 1
    assert longest["text_line"] == text[:1_000].count("\n") + 1
    assert longest["occurrences"] == 1


def test_random_text_shares_almost_no_20grams(tmp_path):
    (tmp_path / "corpus.txt").write_text(_random_text(6, 50_000))
    (tmp_path / "text.txt").write_text(_random_text(7, 5_000))
    report = _json(str(tmp_path / "text.txt"), str(tmp_path / "corpus.txt"))
    assert report["ngrams"]["20"]["found"] == 0
    assert report["ngrams"]["50"]["found"] == 0
    assert report["ngrams"]["10"]["share"] < 0.01
    assert report["longest"]["length"] < 20


def test_text_taken_whole_from_the_corpus_shares_everything(tmp_path):
    corpus = _random_text(8, 5_000)
    (tmp_path / "corpus.txt").write_text(corpus)
    report = _json("-", str(tmp_path / "corpus.txt"), input=corpus[1_000:1_400])
    for k in ("10", "20", "50"):
        assert report["ngrams"][k]["share"] == 1.0
    assert report["longest"]["length"] == 400 and report["longest"]["corpus_offset"] == 1_000
    corpus_words = set(re.findall(r"\w+", corpus))
    text_words = re.findall(r"\w+", corpus[1_000:1_400])  # the first and last may be parts of words
    assert report["words"]["total"] == len(text_words)
    assert report["words"]["found"] == sum(w in corpus_words for w in text_words) >= len(text_words) - 2


def test_word_share_is_exact(tmp_path):
    (tmp_path / "corpus.txt").write_text("the cat sat on the mat; naïve_ones 42 times\n")
    text = "The cat sat, the dog sat on the mat! naïve_ones 42 4 ca mats"
    (tmp_path / "text.txt").write_text(text)
    words = _json(str(tmp_path / "text.txt"), str(tmp_path / "corpus.txt"))["words"]
    # found: cat sat the sat on the mat naïve_ones 42 (9); not: The dog 4 ca mats (part of a word is no word)
    assert words["total"] == len(re.findall(r"\w+", text)) == 14
    assert words["found"] == 9 and words["share"] == 9 / 14
    assert words["distinct"] == 12 and words["distinct_found"] == 7
    assert words["novel"] == ["The", "dog", "4", "ca", "mats"]


def test_unknown_characters_break_matches_and_words(tmp_path):
    (tmp_path / "corpus.txt").write_text("abcdef abcdef\n")
    report = _json("-", str(tmp_path / "corpus.txt"), "-k3", input="abcXdef abcé")
    assert report["longest"]["text"] == "def abc" and report["longest"]["text_offset"] == 4
    # 3-grams: abc bcX cXd Xde def "ef " "f a" " ab" abc bcé; found: abc def "ef " "f a" " ab" abc
    assert report["ngrams"]["3"] == {"total": 10, "found": 6, "share": 0.6}
    assert report["words"]["found"] == 0 and report["words"]["novel"] == ["abcXdef", "abcé"]


def test_json_schema(tmp_path, small_text_file):
    report = _json("-", str(small_text_file), input="the cat sat on the mat. zebra")
    assert set(report) == {
        "text",
        "corpus",
        "unit",
        "text_length",
        "corpus_length",
        "longest",
        "ngrams",
        "words",
    }
    assert report["unit"] == "character" and report["text"] == "-"
    assert set(report["longest"]) >= {"length", "text", "text_offset", "corpus_offset", "corpus_line"}
    assert report["ngrams"]["50"] == {"total": 0, "found": 0, "share": None}  # text shorter than 50
    assert set(report["words"]) == {"total", "found", "share", "distinct", "distinct_found", "novel"}
    assert report["words"]["novel"] == ["zebra"]


def test_table_output(tmp_path, small_text_file):
    result = _run("-", str(small_text_file), input="the cat sat on the mat. zebra")
    assert result.exit_code == 0, result.output
    assert "longest shared substring" in result.stdout and "20-char substrings found" in result.stdout
    assert "n/a" in result.stdout  # 50-grams of a 29-character text


def test_folder_corpus_names_file_and_line(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text(_random_text(9, 3_000))
    second = _random_text(10, 3_000)
    (folder / "b.txt").write_text(second)
    offset = second.index("\n", 1_000) + 1
    longest = _json("-", str(folder), input="ZZ" + second[offset : offset + 200] + "ZZ")["longest"]
    assert longest["file"] == "b.txt" and longest["file_index"] == 1
    assert longest["file_offset"] == offset and longest["length"] == 200
    assert longest["file_line"] == second[:offset].count("\n") + 1


def test_byte_level_corpus(tmp_path):
    corpus = "東京 café " * 50 + _random_text(11, 500)
    (tmp_path / "corpus.txt").write_text(corpus)
    report = _json("-", str(tmp_path / "corpus.txt"), "--level", "byte", input="東京 café 東京 zz")
    assert report["unit"] == "byte"
    assert report["longest"]["text"] == "東京 café 東京 "
    assert report["longest"]["length"] == len("東京 café 東京 ".encode()) == 20
    assert report["words"]["total"] == 4 and report["words"]["novel"] == ["zz"]  # UTF-8 letters join words
    assert report["words"]["found"] == 3


def test_index_is_cached_reused_and_rebuilt_when_damaged(tmp_path, isolated_cache):
    (tmp_path / "corpus.txt").write_text(_random_text(12, 3_000))
    args = ("-", str(tmp_path / "corpus.txt"), "--json")
    first = _run(*args, input="some text")
    assert first.exit_code == 0 and "building the novelty index" in first.stderr
    (index,) = (isolated_cache / "tokens").glob("*.nov")
    assert index.with_suffix(".tok").exists()
    second = _run(*args, input="some text")
    assert second.exit_code == 0 and second.stderr == "" and second.stdout == first.stdout
    data = bytearray(index.read_bytes())
    data[-5] ^= 0xFF
    index.write_bytes(bytes(data))
    third = _run(*args, input="some text")
    assert third.exit_code == 0 and third.stdout == first.stdout
    assert "novelty index" in third.stderr and "damaged" in third.stderr and "checksum" in third.stderr
    index.write_bytes(index.read_bytes()[:100])  # truncated
    assert "damaged" in _run(*args, input="some text").stderr
    assert _run(*args, input="some text").stderr == ""  # rebuilt and kept


def test_changed_corpus_gets_a_new_index(tmp_path, isolated_cache):
    path = tmp_path / "corpus.txt"
    path.write_text("first version of the corpus\n")
    assert _json("-", str(path), input="second version")["words"]["found"] == 1
    path.write_text("second version, longer than the first\n")
    assert _json("-", str(path), input="second version")["words"]["found"] == 2
    assert len(list((isolated_cache / "tokens").glob("*.nov"))) == 1  # the old index was swept


@pytest.mark.parametrize(
    ("args", "input", "message"),
    [
        (("missing.txt", "{corpus}"), None, "missing.txt: no such file"),
        (("-", "{corpus}"), "", "empty"),
        (("{binary}", "{corpus}"), None, "looks binary"),
        (("-", "{tmp}/nowhere.txt"), "text", "nowhere.txt: no such file"),
        (("-", "-"), "text", "only one of TEXT and CORPUS"),
        (("{tmp}", "{corpus}"), None, "is a directory"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, args, input, message):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("some corpus text\n")
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    names = {"corpus": str(corpus), "binary": str(binary), "tmp": str(tmp_path)}
    result = _run(*(a.format(**names) for a in args), input=input)
    assert result.exit_code == 1
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stdout == ""


def test_help_has_examples():
    result = runner.invoke(app, ["novelty", "--help"])
    assert result.exit_code == 0 and "charrnn novelty - shakespeare" in result.stdout


def test_corpus_of_more_than_256_characters(tmp_path):
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
    corpus = _random_text(13, 4_000, "".join(chars))
    (tmp_path / "corpus.txt").write_text(corpus)
    report = _json("-", str(tmp_path / "corpus.txt"), input="ab" + corpus[2_000:2_100] + "cd")
    assert report["longest"]["length"] == 100 and report["longest"]["corpus_offset"] == 2_000
    assert report["ngrams"]["50"] == {"total": 55, "found": 51, "share": 51 / 55}


def test_repetitive_corpus_reports_the_first_occurrence(tmp_path):
    (tmp_path / "corpus.txt").write_text("ab" * 1_000)
    longest = _json("-", str(tmp_path / "corpus.txt"), input="xx" + "ba" * 100 + "x")["longest"]
    assert longest["length"] == 200 and longest["corpus_offset"] == 1 and longest["occurrences"] == 900
