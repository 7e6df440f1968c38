"""Sampling in bounded memory: the prime warmed up in chunks, many samples in batches, text decoded whole."""

from __future__ import annotations

import io
import random

import pytest
import torch
import torch.nn.functional as F

import charrnn.evaluate
import charrnn.sample
from charrnn.errors import BadInput
from charrnn.model import CharRNN, ModelConfig
from charrnn.sample import SamplingConfig, check_prime, choose, generate, sample_text, warm_up, write_samples
from charrnn.stepper import Stepper
from charrnn.vocab import Vocabulary


def _model_and_vocab(cell: str = "lstm"):
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models: threads only cost (the conftest fixture resets it per test)
    vocab = Vocabulary.from_text("abcdefgh\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=2, hidden=16, embedding=8, cell=cell)).eval()
    return model, vocab


def _one_call(model, vocab, prime: str, config: SamplingConfig) -> list[str]:
    """Generation as it was before chunking: the whole prime in one model call, on every row."""
    n = config.num_samples
    generator = torch.Generator().manual_seed(config.seed)
    ids = vocab.encode(prime).long()
    with torch.inference_mode():
        _, state = model(ids[:-1].unsqueeze(0).expand(n, -1), model.init_state(n))
        stepper = Stepper(model)
        layer_state = stepper.split_state(state)
        current = torch.full((n,), int(ids[-1]))
        rows = []
        for _ in range(config.length):
            current = choose(stepper.step(current, layer_state), config.temperature, generator)
            rows.append(current.tolist())
    return ["".join(vocab.chars[r[s]] for r in rows) for s in range(n)]


def _texts(model, vocab, prime: str, config: SamplingConfig) -> list[str]:
    rows = [ids.tolist() for ids in generate(model, vocab, prime, config)]
    return ["".join(vocab.chars[r[s]] for r in rows) for s in range(config.num_samples)]


def _long_prime(chars: int) -> str:
    rng = random.Random(0)
    return "".join(rng.choice("abcdefgh\n") for _ in range(chars))


@pytest.mark.parametrize("num_samples", [1, 3])
def test_short_prime_gives_the_one_call_text(num_samples):
    model, vocab = _model_and_vocab()
    config = SamplingConfig(length=60, seed=4, num_samples=num_samples)
    assert _texts(model, vocab, "abcabc\nfed", config) == _one_call(model, vocab, "abcabc\nfed", config)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_long_prime_is_read_in_bounded_chunks_to_the_one_call_state(monkeypatch, cell):
    monkeypatch.setattr(charrnn.evaluate, "MAX_CHUNK_POSITIONS", 64)  # chunk_length(1) becomes 64
    model, vocab = _model_and_vocab(cell)
    prime = _long_prime(2000)
    calls: list[tuple[int, int]] = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    warmed = warm_up(model, vocab, prime)
    hook.remove()
    assert len(calls) == -(-1999 // 64) and all(c[0] == 1 and c[1] <= 64 for c in calls)
    assert sum(c[1] for c in calls) == 1999 and warmed.first == vocab.index(prime[-1])
    with torch.inference_mode():
        _, state = model(vocab.encode(prime[:-1]).long().unsqueeze(0), model.init_state(1))
    pairs = zip(warmed.state, state, strict=True) if cell == "lstm" else [(warmed.state, state)]
    for chunked, whole in pairs:
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    config = SamplingConfig(length=40, seed=2, num_samples=2)
    assert _texts(model, vocab, prime, config) == _one_call(model, vocab, prime, config)


def test_samples_up_to_the_bound_are_the_text_generated_together():
    model, vocab = _model_and_vocab()
    config = SamplingConfig(length=12, seed=3, num_samples=4)
    texts = _texts(model, vocab, "abc", config)
    out = io.StringIO()
    write_samples(out, model, vocab, "abc", config, separator="\n--\n", max_rows=4)
    assert out.getvalue() == "\n--\n".join("abc" + t for t in texts) + "\n"
    quiet = io.StringIO()
    write_samples(quiet, model, vocab, "abc", config, separator="|", echo=False, max_rows=4)
    assert quiet.getvalue() == "|".join(texts) + "\n"


def test_many_samples_come_in_batches_of_bounded_rows(monkeypatch):
    model, vocab = _model_and_vocab()
    asked: list[int] = []
    real = charrnn.sample.generate

    def counting(model, vocab, prime, config, *args, **kwargs):
        asked.append(config.num_samples)
        return real(model, vocab, prime, config, *args, **kwargs)

    monkeypatch.setattr(charrnn.sample, "generate", counting)
    config = SamplingConfig(length=10, seed=7, num_samples=7)
    out = io.StringIO()
    write_samples(out, model, vocab, "ab", config, separator="\n--\n", max_rows=3)
    assert asked == [3, 3, 1]
    samples = out.getvalue()[:-1].split("\n--\n")
    assert len(samples) == 7 and all(s.startswith("ab") and len(s) == 12 for s in samples)
    assert len(set(samples)) == 7  # one random stream across batches: no batch repeats another
    again = io.StringIO()
    write_samples(again, model, vocab, "ab", config, separator="\n--\n", max_rows=3)
    assert again.getvalue() == out.getvalue()
    first_batch = _texts(model, vocab, "ab", SamplingConfig(length=10, seed=7, num_samples=3))
    assert samples[:3] == ["ab" + t for t in first_batch]


def test_sample_zero_streams_before_the_others_are_written():
    model, vocab = _model_and_vocab()
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(s)
            return len(s)

    write_samples(Recorder(), model, vocab, "ab", SamplingConfig(length=15, seed=1, num_samples=3), "cpu")
    assert writes[0] == "ab" and all(len(piece) == 1 for piece in writes[1:16])
    assert all(piece.startswith("\nab") and len(piece) == 18 for piece in writes[17:19])


def test_check_prime_names_unknown_characters_or_drops_them():
    _, vocab = _model_and_vocab()
    with pytest.raises(BadInput, match="'Z'"):
        check_prime(vocab, "abZ")
    assert check_prime(vocab, "abZ", drop_unknown=True) == "ab"


def _memorising_byte_model() -> tuple[CharRNN, Vocabulary]:
    """A tiny byte-level model that has learnt one line of 2-, 3- and 4-byte characters by heart."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    vocab = Vocabulary.for_bytes()
    model = CharRNN(ModelConfig(vocab_size=256, layers=1, hidden=32, embedding=16))
    ids = vocab.encode("é東🙂 " * 6).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        logits, _ = model(ids[None, :-1])
        loss = F.cross_entropy(logits[0], ids[1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), vocab


def test_sample_text_keeps_multibyte_characters_whole():
    model, vocab = _memorising_byte_model()
    config = SamplingConfig(length=40, temperature=0, seed=1)
    raw = bytes(int(ids[0]) for ids in generate(model, vocab, "é東", config))
    expected = raw.decode("utf-8")  # the bytes are valid UTF-8 (strict decoding would raise otherwise)
    assert len(expected) < len(raw)  # and hold multi-byte characters
    text = sample_text(model, vocab, "é東", config)
    assert text == expected and "\ufffd" not in text
    assert "\ufffd" in "".join(vocab.decode(ids) for ids in generate(model, vocab, "é東", config))
    out = io.StringIO()
    write_samples(out, model, vocab, "é東", config)
    assert out.getvalue() == "é東" + expected + "\n"
