import pytest
import torch

from charrnn.corpus import encode_bytes
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
    assert id_dtype(257) == torch.int16
    assert id_dtype(40000) == torch.int32
    big = Vocabulary(chr(0x4E00 + i) for i in range(300))
    assert big.encode(big.chars[299]).dtype == torch.int16
    assert big.encode(big.chars[299]).item() == 299


def test_unknown_characters_are_named():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(KeyError) as e:
        vocab.encode("abxyz")
    assert e.value.args[0] == ["x", "y", "z"]
    assert vocab.unknown_chars("abz") == ["z"]


def test_byte_fast_path_matches_text_path():
    text = "Hello, world!\nSecond line.\n" * 10
    fast_vocab, fast_ids = encode_bytes(text.encode())
    slow_vocab = Vocabulary.from_text(text)
    assert fast_vocab == slow_vocab
    assert torch.equal(fast_ids, slow_vocab.encode(text))


def test_plain_list_round_trip():
    vocab = Vocabulary.from_text("héllo")
    assert Vocabulary.from_list(vocab.to_list()) == vocab
