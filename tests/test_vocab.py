import pytest
import torch

from charrnn.corpus import load_corpus
from charrnn.vocab import Vocabulary, id_dtype


def test_round_trip_with_non_ascii_text():
    text = "Ünïcödé — 東京, emoji 🙂 and newlines\nok"
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert len(vocab) == len(set(text))
    assert ids.dtype == torch.uint8


def test_ids_follow_code_point_order():
    vocab = Vocabulary.from_text("cab\n")
    assert vocab.chars == ["\n", "a", "b", "c"]
    assert vocab.encode("abc").tolist() == [1, 2, 3]


def test_smallest_dtype_is_chosen():
    assert id_dtype(256) == torch.uint8
    assert id_dtype(257) == torch.uint16
    assert id_dtype(65536) == torch.uint16
    assert id_dtype(65537) == torch.uint32
    big = Vocabulary(chr(0x4E00 + i) for i in range(300))
    assert big.encode(big.chars[299]).dtype == torch.uint16
    assert big.encode(big.chars[299]).item() == 299


def test_unknown_characters_are_named():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(KeyError) as e:
        vocab.encode("abxyz")
    assert e.value.args[0] == ["x", "y", "z"]
    assert vocab.unknown_chars("abz") == ["z"]


def test_streamed_file_encoding_matches_in_memory_encoding(tmp_path):
    text = "Hello, world!\nSecond line.\n" * 10 + "and then naïve 東京 🙂\n"
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(path)
    memory_vocab = Vocabulary.from_text(text)
    assert corpus.vocab == memory_vocab
    assert torch.equal(corpus.ids, memory_vocab.encode(text))


def test_byte_vocabulary_encodes_utf8_and_decodes_in_pieces():
    vocab = Vocabulary.for_bytes()
    assert len(vocab) == 256 and vocab.is_bytes and vocab.unit == "byte"
    ids = vocab.encode("é🙂")
    assert ids.tolist() == list("é🙂".encode())
    assert vocab.unknown_chars("anything ☃") == []
    decoder = vocab.decoder()
    pieces = [decoder.feed(i) for i in ids.tolist()]
    assert pieces == ["", "é", "", "", "", "🙂"]  # shown once a character's last byte arrives
    assert vocab.decode([0xFF, 0x41]) == "\ufffdA"  # only the invalid byte is replaced
    decoder.feed(0xF0)
    assert decoder.flush() == "\ufffd"  # an unfinished sequence at the end
    assert Vocabulary.from_list(vocab.to_list(), "byte") == vocab != Vocabulary(vocab.chars)


def test_plain_list_round_trip():
    vocab = Vocabulary.from_text("héllo")
    assert Vocabulary.from_list(vocab.to_list()) == vocab
