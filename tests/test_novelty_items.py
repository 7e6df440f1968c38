"""`ItemMatcher`: whole items and longest overlaps, batched through the novelty index, are exact."""

from __future__ import annotations

import random

import numpy as np
import pytest

import charrnn.novelty as nv
from charrnn.sources import FILE_SEPARATOR
from charrnn.vocab import Vocabulary

SEP = FILE_SEPARATOR


def _matcher(corpus: str, delimiter: str = "\n", several: bool = False, vocab: Vocabulary | None = None):
    vocab = vocab or Vocabulary(corpus)
    ids = vocab.encode(corpus).numpy()
    return nv.ItemMatcher(ids, vocab, nv.build_index(ids, vocab), delimiter, several=several)


def _random_text(rng: random.Random, size: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def _naive_whole(corpus: str, item: str, delimiter: str, several: bool = False) -> bool:
    """The class docstring's rule, by str.find."""
    tails = [delimiter[:k] for k in range(len(delimiter))]
    lefts = [delimiter, SEP] if several else [delimiter]
    rights = [delimiter] + ([t + SEP for t in tails] if several else [])
    return (
        any(left + item + right in corpus for left in lefts for right in rights)
        or any(corpus.startswith(item + right) for right in rights)
        or any(corpus.endswith(left + item + t) for left in lefts for t in tails)
        or any(corpus == item + t for t in tails)
    )


def _naive_overlap(corpus, item) -> int:
    """Works on str or bytes alike."""
    best = 0
    for i in range(len(item)):
        while i + best < len(item) and item[i : i + best + 1] in corpus:
            best += 1
    return best


def test_planted_item_is_whole_and_part_of_a_line_is_not():
    rng = random.Random(1)
    lines = [_random_text(rng, rng.randint(3, 12), "abcdefghij ") for _ in range(2_000)]
    lines[777] = "zebracorn"
    lines[1234] = "the quick fox"
    corpus = "\n".join(lines) + "\n"
    matcher = _matcher(corpus + "klmnopqrstuvwxyz")
    items = ["zebracorn", "the quick fox", "quick fox", "the quick", "zebracor", "ebracorn", "zebracornx"]
    assert matcher.whole_items(items).tolist() == [True, True, False, False, False, False, False]
    assert matcher.longest_overlaps(items).tolist() == [9, 13, 9, 9, 8, 8, 9]


@pytest.mark.parametrize("trailing", ["", "\n"])
def test_first_and_last_lines_count(trailing):
    matcher = _matcher("first line\nmiddle\nlast line" + trailing)
    items = ["first line", "middle", "last line", "first", "line", "last line\n", "irst line"]
    assert matcher.whole_items(items).tolist() == [True, True, True, False, False, bool(trailing), False]


def test_a_corpus_of_one_item():
    matcher = _matcher("solo")
    assert matcher.whole_items(["solo", "sol", "olo", "", "solo\n"]).tolist() == [
        True,
        False,
        False,
        False,
        False,
    ]


def test_paragraphs():
    corpus = "first para\nline two\n\nsecond\n\nthird para\n"  # one newline at the end: still a boundary
    matcher = _matcher(corpus, "\n\n")
    items = ["first para\nline two", "second", "third para", "first para", "line two", "third para\n", ""]
    assert matcher.whole_items(items).tolist() == [True, True, True, False, False, True, False]
    spaced = _matcher("a\n\n\nb\n\nc", "\n\n")  # three newlines: "b" follows a delimiter, and so does "\nb"
    assert spaced.whole_items(["a", "b", "\nb", "c", "\n", ""]).tolist() == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_other_delimiters():
    matcher = _matcher("red, green, blue", ", ")
    assert matcher.whole_items(["red", "green", "blue", "gree", "red, green", ","]).tolist() == [
        True,
        True,
        True,
        False,
        True,  # two consecutive items, delimiter included
        False,
    ]


def test_empty_items():
    assert _matcher("a\nb").whole_items([""]).tolist() == [False]
    assert _matcher("a\n\nb").whole_items([""]).tolist() == [True]
    assert _matcher("\na").whole_items([""]).tolist() == [True]
    assert _matcher("a\n").whole_items([""]).tolist() == [True]
    assert _matcher("a\nb").longest_overlaps(["", "a", ""]).tolist() == [0, 1, 0]
    assert _matcher("a\nb").whole_items([]).shape == (0,) and _matcher("a").longest_overlaps([]).shape == (0,)


def test_long_shared_run_and_random_text():
    rng = random.Random(2)
    alphabet = "abcdefghijklmnopqrstuvwxyz \n"
    corpus = _random_text(rng, 50_000, alphabet)
    matcher = _matcher(corpus + "0123456789")
    copied = [_random_text(rng, 5, "0123456789") + corpus[k : k + 30] + "9" for k in range(100, 20_000, 997)]
    fresh = [_random_text(rng, 40, alphabet.strip()) for _ in range(50)]
    copied_overlaps = matcher.longest_overlaps(copied)
    assert (copied_overlaps >= 30).all() and (copied_overlaps <= 32).all()
    assert matcher.longest_overlaps(fresh).max() < 10  # ~log_26(50,000) + a little
    assert not matcher.whole_items(copied + fresh).any()
    lines = corpus.split("\n")[1:-1]
    assert matcher.whole_items(lines[:300]).all()  # every line, whatever its length


def test_items_longer_than_the_search_window(monkeypatch):
    monkeypatch.setattr(nv, "WINDOW", 4)
    line = "a long line of text, " * 5
    matcher = _matcher("x\n" + line + "\n" + line + "y\n")
    assert matcher.whole_items([line, line + "y", line[:-1], line + "yy"]).tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert matcher.longest_overlaps([line + "y!"]).tolist() == [len(line) + 1]


def test_unknown_characters():
    matcher = _matcher("alice\nbob\n")
    items = ["bob☃", "☃", "alice☃bob", "boß", "bob"]
    assert matcher.whole_items(items).tolist() == [False, False, False, False, True]
    assert matcher.longest_overlaps(items).tolist() == [3, 0, 5, 2, 3]
    no_delimiter = _matcher("alice", "\n")  # the corpus lacks the delimiter: only the whole corpus is an item
    assert no_delimiter.whole_items(["alice", "alic", ""]).tolist() == [True, False, False]


def test_byte_level_vocabulary_compares_utf8_bytes():
    matcher = _matcher("東京\ncafé\nnaïve\n", vocab=Vocabulary.for_bytes())
    items = ["東京", "café", "cafè", "東", "東京x", "naïve", ""]
    assert matcher.whole_items(items).tolist() == [
        True,
        True,
        False,
        False,
        False,
        True,
        True,
    ]  # "": ends "\n"
    # "è" and "é" share their first UTF-8 byte, 0xC3; 東 is three bytes
    assert matcher.longest_overlaps(items).tolist() == [6, 5, 4, 3, 6, 6, 0]


def test_files_of_a_folder_corpus():
    corpus = "alpha\nbeta" + SEP + "gamma\n" + SEP + "delta\nepsilon" + SEP
    items = ["alpha", "beta", "gamma", "delta", "epsilon", "eta", "beta\x1c"]
    # an item holding the separator symbol is matched literally: "\nbeta\x1c\n" is in the corpus
    assert _matcher(corpus, several=True).whole_items(items).tolist() == [True] * 5 + [False, True]
    # read as one text, a file's last line without a final newline runs into the separator
    assert _matcher(corpus).whole_items(items).tolist() == [True, False, True, True, False, False, True]
    paragraphs = "one\n\ntwo\n" + SEP + "three\n\nfour" + SEP
    matcher = _matcher(paragraphs, "\n\n", several=True)
    assert matcher.whole_items(["one", "two", "three", "four", "two\n", "fou"]).tolist() == [True] * 5 + [
        False
    ]


def test_memory_mapped_corpus_and_index(tmp_path):
    corpus = "north\nsouth\neast\nwest\n" * 100
    vocab = Vocabulary(corpus)
    tokens = tmp_path / "c.tok"
    vocab.encode(corpus).numpy().tofile(tokens)
    ids = np.memmap(tokens, dtype=np.uint8, mode="r")
    nv.write_index(tmp_path / "c.nov", nv.build_index(np.asarray(ids), vocab), "fp")
    index = nv.read_index(tmp_path / "c.nov", "fp", ids.size)
    assert isinstance(index.sa, np.memmap)
    matcher = nv.ItemMatcher(ids, vocab, index, "\n")
    assert matcher.whole_items(["east", "eas", "west"]).tolist() == [True, False, True]
    assert matcher.longest_overlaps(["northwest", "test"]).tolist() == [5, 3]  # "north"; "est"


def test_matching_statistics_at_chosen_positions():
    rng = random.Random(3)
    corpus = _random_text(rng, 400, "abc")
    text = _random_text(rng, 200, "abcd")
    vocab = Vocabulary("abcd")
    ids = vocab.encode(corpus).numpy()
    sa = nv.suffix_array(ids, len(vocab))
    symbols = nv.symbol_ids(text, vocab)
    full, full_at = nv.matching_statistics(ids, sa, symbols)
    chosen = np.array(sorted(rng.sample(range(200), 40)))
    ms, at = nv.matching_statistics(ids, sa, symbols, positions=chosen)
    assert ms[chosen].tolist() == full[chosen].tolist() and at[chosen].tolist() == full_at[chosen].tolist()
    rest = np.setdiff1d(np.arange(200), chosen)
    assert not ms[rest].any() and (at[rest] == -1).all()


@pytest.mark.parametrize("window", [2, 64])
def test_randomized_against_naive(window, monkeypatch):
    monkeypatch.setattr(nv, "WINDOW", window)
    alphabet = "ab\n"
    vocab = Vocabulary(alphabet + SEP)
    for seed in range(60):
        rng = random.Random(seed)
        delimiter = ["\n", "\n\n", "ab", "a"][seed % 4]
        several = seed % 3 == 0
        if several:
            files = [_random_text(rng, rng.randint(1, 15), alphabet) for _ in range(rng.randint(1, 3))]
            corpus = "".join(f + SEP for f in files)
        else:
            files = [_random_text(rng, rng.randint(0, 40), alphabet)]
            corpus = files[0]
        pieces = [p for f in files for p in f.split(delimiter)]
        items = pieces + [_random_text(rng, rng.randint(0, 6), alphabet + "z") for _ in range(20)]
        items += [corpus[a : a + rng.randint(0, 8)] for a in (rng.randint(0, len(corpus)) for _ in range(5))]
        matcher = _matcher(corpus, delimiter, several=several, vocab=vocab)
        whole = matcher.whole_items(items).tolist()
        assert whole == [_naive_whole(corpus, item, delimiter, several) for item in items], (
            corpus,
            delimiter,
        )
        assert matcher.longest_overlaps(items).tolist() == [_naive_overlap(corpus, item) for item in items]
        if delimiter == "\n":  # lines: the same as splitting each file into lines
            lines = {p for f in files for p in f.split("\n")}
            plain = [i for i, item in enumerate(items) if "\n" not in item and "\x1c" not in item]
            assert [whole[i] for i in plain] == [items[i] in lines for i in plain]


def test_randomized_bytes_against_naive():
    alphabet = "aé東\n"
    vocab = Vocabulary.for_bytes()
    for seed in range(20):
        rng = random.Random(100 + seed)
        corpus = _random_text(rng, rng.randint(0, 40), alphabet)
        items = corpus.split("\n") + [_random_text(rng, rng.randint(0, 5), alphabet + "è") for _ in range(15)]
        matcher = _matcher(corpus, "\n", vocab=vocab)
        assert matcher.whole_items(items).tolist() == [_naive_whole(corpus, item, "\n") for item in items]
        data = corpus.encode()
        assert matcher.longest_overlaps(items).tolist() == [_naive_overlap(data, i.encode()) for i in items]


def test_an_empty_corpus():
    matcher = _matcher("", vocab=Vocabulary("ab\n"))
    assert matcher.whole_items(["", "a"]).tolist() == [True, False]  # the empty corpus is the empty item
    assert matcher.longest_overlaps(["", "a"]).tolist() == [0, 0]


def test_empty_delimiter_is_refused():
    with pytest.raises(ValueError, match="delimiter"):
        _matcher("abc", "")
