"""Sampling in bounded memory: the prime read in chunks, many samples in bounded batches, text decoded
whole; and the engine's text equal to a plain one-call reference loop."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import charrnn.evaluate
from charrnn.engine import Engine, _RowSettings, choose, row_key, uniforms
from charrnn.errors import BadInput
from charrnn.model import CharRNN, ModelConfig
from charrnn.sample import SamplingConfig, check_prime, sample_text, samples, write_samples
from charrnn.stepper import Stepper
from charrnn.vocab import Vocabulary


def _model_and_vocab(cell: str = "lstm"):
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models: threads only cost (the conftest fixture resets it per test)
    vocab = Vocabulary.from_text("abcdefgh\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=2, hidden=16, embedding=8, cell=cell)).eval()
    return model, vocab


def _one_call(model, vocab, prime: str, config: SamplingConfig) -> list[str]:
    """The reference: the whole prime in one model call on every row, then all rows stepped together for
    the whole length, row i drawing from its stream row_key(seed, i)."""
    n = config.num_samples
    ids = vocab.encode(prime).long()
    keys = np.array([row_key(config.seed, i) for i in range(n)], dtype=np.uint64)
    u = torch.from_numpy(uniforms(keys, np.zeros(n, dtype=np.uint64), config.length))
    settings = _RowSettings.of([config.sampling] * n, torch.device("cpu"))
    with torch.inference_mode():
        _, state = model(ids[:-1].unsqueeze(0).expand(n, -1), model.init_state(n))
        stepper = Stepper(model)
        layer_state = stepper.split_state(state)
        current = torch.full((n,), int(ids[-1]))
        rows = []
        for t in range(config.length):
            current, _, _ = choose(stepper.step(current, layer_state), settings, u[t].float())
            rows.append(current.tolist())
    return ["".join(vocab.chars[r[s]] for r in rows) for s in range(n)]


def _texts(model, vocab, prime: str, config: SamplingConfig, max_rows: int | None = None) -> list[str]:
    return [g.text for g in samples(Engine(model, vocab), prime, config, max_rows=max_rows)]


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
    start = Engine(model, vocab).start(prime)
    hook.remove()
    assert len(calls) == -(-1999 // 64) and all(c[0] == 1 and c[1] <= 64 for c in calls)
    assert sum(c[1] for c in calls) == 1999 and start.first == vocab.index(prime[-1])
    with torch.inference_mode():
        _, state = model(vocab.encode(prime[:-1]).long().unsqueeze(0), model.init_state(1))
    whole = Stepper(model).split_state(state)
    for chunked, full in zip(start.state, whole, strict=True):
        for a, b in zip(
            chunked if cell == "lstm" else [chunked], full if cell == "lstm" else [full], strict=True
        ):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    config = SamplingConfig(length=40, seed=2, num_samples=2)
    assert _texts(model, vocab, prime, config) == _one_call(model, vocab, prime, config)


def test_samples_are_written_as_generated_with_separator_and_prime():
    model, vocab = _model_and_vocab()
    config = SamplingConfig(length=12, seed=3, num_samples=4)
    texts = _texts(model, vocab, "abc", config)
    out = io.StringIO()
    write_samples(out, Engine(model, vocab), "abc", config, separator="\n--\n")
    assert out.getvalue() == "\n--\n".join("abc" + t for t in texts) + "\n"
    quiet = io.StringIO()
    write_samples(quiet, Engine(model, vocab), "abc", config, separator="|", echo=False)
    assert quiet.getvalue() == "|".join(texts) + "\n"


def test_many_samples_come_in_bounded_batches_and_each_is_its_own_stream(monkeypatch):
    model, vocab = _model_and_vocab()
    engine = Engine(model, vocab)
    widths: list[int] = []
    real = engine.stepper.step

    def counting(ids, state):
        widths.append(ids.numel())
        return real(ids, state)

    monkeypatch.setattr(engine.stepper, "step", counting)
    engine._numpy = None  # every step through the (counted) PyTorch stepper
    config = SamplingConfig(length=10, seed=7, num_samples=7)
    texts = [g.text for g in samples(engine, "ab", config, max_rows=3)]
    assert max(widths) == 3 and sum(widths) == 7 * 10  # never more than 3 rows; each row its length
    assert len(texts) == 7 and all(len(t) == 10 for t in texts) and len(set(texts)) == 7
    # sample i is the same text whatever the batching and however many samples are asked for
    assert texts == _texts(model, vocab, "ab", config, max_rows=7)
    assert texts[:2] == _texts(model, vocab, "ab", SamplingConfig(length=10, seed=7, num_samples=2))


def test_sample_zero_streams_before_the_others_are_written():
    model, vocab = _model_and_vocab()
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(s)
            return len(s)

    engine = Engine(model, vocab)
    engine.chunk = 4
    write_samples(Recorder(), engine, "ab", SamplingConfig(length=15, seed=1, num_samples=3))
    assert writes[0] == "ab" and [len(piece) for piece in writes[1:5]] == [4, 4, 4, 3]
    assert all(piece.startswith("\nab") and len(piece) == 18 for piece in writes[5:7])


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
    pieces: list[str] = []
    engine = Engine(model, vocab)
    engine.chunk = 1  # one byte at a time: a character's bytes arrive in separate chunks
    generated = next(samples(engine, "é東", config, stream_first=pieces.append))
    text = "".join(pieces)
    raw = text.encode("utf-8")
    assert generated.symbols == len(raw) == 40 and len(text) < len(raw)  # multi-byte characters
    assert "\ufffd" not in text and all(len(p) == 1 for p in pieces)  # each came out whole
    assert sample_text(model, vocab, "é東", config) == text
    out = io.StringIO()
    write_samples(out, Engine(model, vocab), "é東", config)
    assert out.getvalue() == "é東" + text + "\n"
