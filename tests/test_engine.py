"""The generation engine: stop strings (held back, across chunks, at the first character, several, per row),
log-probabilities equal to scoring, rows joining and leaving, and each row's text independent of its batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from charrnn.engine import Engine, Sampling, TextRow, row_key
from charrnn.errors import BadInput, BadSetting
from charrnn.model import CharRNN, ModelConfig
from charrnn.sample import SamplingConfig, samples
from charrnn.vocab import Vocabulary


def _model(cell: str = "lstm", level: str = "char"):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    vocab = Vocabulary.for_bytes() if level == "byte" else Vocabulary.from_text("abcde \n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=2, hidden=16, embedding=8, cell=cell)).eval()
    return model, vocab


def _texts(model, vocab, prime="a", chunk=16, **kw) -> list:
    engine = Engine(model, vocab)
    engine.chunk = chunk
    return list(samples(engine, prime, SamplingConfig(**kw)))


def _cut(text: str, stops: list[str]) -> str:
    """The reference: the text up to the stop string that ends first (the longest of those ending there)."""
    best = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (
            best is None or (at + len(stop), -len(stop)) < (best[0] + len(best[1]), -len(best[1]))
        ):
            best = (at, stop)
    return text if best is None else text[: best[0]]


@pytest.mark.parametrize("chunk", [1, 3, 16])
@pytest.mark.parametrize("stops", [["\n"], ["ab", "c"], ["cab", "ab"], ["dd", "e e", "\n\n"], ["bcd"]])
def test_a_stopped_sample_is_the_unstopped_one_cut_at_its_first_stop(chunk, stops):
    model, vocab = _model()
    free = _texts(model, vocab, length=120, seed=3, num_samples=6)
    stopped = _texts(model, vocab, chunk=chunk, length=120, seed=3, num_samples=6, stop=tuple(stops))
    for whole, cut in zip(free, stopped, strict=True):
        expected = _cut(whole.text, stops)
        assert cut.text == expected
        assert cut.finish == ("stop" if expected != whole.text else "length")
    assert len({c.text for c in stopped}) > 1  # each sample stopped on its own


def test_a_stop_at_the_very_first_character_gives_an_empty_text():
    model, vocab = _model()
    first = _texts(model, vocab, length=30, seed=5)[0].text[0]
    got = _texts(model, vocab, length=30, seed=5, stop=(first,))[0]
    assert got.text == "" and got.finish == "stop" and got.symbols == 1


def test_streaming_holds_back_only_what_could_still_start_a_stop():
    model, vocab = _model()
    whole = _texts(model, vocab, length=200, seed=11)[0].text
    stop = whole[40:43]  # three characters that occur in the text
    for chunk in (1, 2, 5):
        engine = Engine(model, vocab)
        engine.chunk = chunk
        pieces: list[str] = []
        shown_at: list[int] = []  # characters generated when each piece came out
        row = TextRow(
            engine.start("a"), Sampling(), row_key(11, 0), engine.symbols, 200, [stop], on_text=pieces.append
        )
        engine.add(row)
        while row.finish is None:
            engine.advance()
            shown_at.append((row.written, len("".join(pieces))))
        text = "".join(pieces)
        assert text == _cut(whole, [stop]) and row.finish == "stop"
        for written, shown in shown_at[:-1]:  # before the end, at most len(stop) - 1 characters held back
            assert written - shown <= len(stop) - 1


def test_the_length_caps_a_sample_that_never_stops_and_the_stop_must_be_writable():
    model, vocab = _model()
    got = _texts(model, vocab, length=25, seed=1, stop=("abcdeabcde",))[0]
    assert got.finish == "length" and got.symbols == 25 and len(got.text) == 25
    with pytest.raises(BadInput, match="never writes"):
        _texts(model, vocab, length=5, stop=("Z",))
    with pytest.raises(BadSetting, match="stop"):
        _texts(model, vocab, length=5, stop=("",))


@pytest.mark.parametrize("level", ["char", "byte"])
def test_the_logprob_is_what_scoring_the_same_symbols_after_the_prime_gives(level):
    model, vocab = _model(level=level)
    if level == "byte":
        with torch.no_grad():  # ASCII only, so the text's bytes are the bytes generated
            model.head.bias[128:] = -1e4
    prime = "ab a"
    for got in _texts(model, vocab, prime=prime, length=60, seed=2, num_samples=3, stop=("e",)):
        generated = got.text + ("e" if got.finish == "stop" else "")
        ids = vocab.encode(prime + generated).long()
        with torch.inference_mode():
            logits, _ = model(ids[None, :-1])
        logp = F.log_softmax(logits[0].double(), dim=-1)
        start = len(vocab.encode(prime)) - 1
        targets = ids[start + 1 :]
        expected = float(logp[torch.arange(start, ids.numel() - 1), targets].sum())
        assert got.symbols == targets.numel()
        assert math.isclose(got.logprob, expected, rel_tol=1e-4, abs_tol=1e-3)
        assert math.isclose(got.nats_per_char, -expected / targets.numel(), rel_tol=1e-4)


def test_a_row_is_the_same_text_whoever_shares_its_batch_and_rows_join_and_leave():
    model, vocab = _model("gru")
    alone = _texts(model, vocab, prime="a", length=50, seed=9)[0].text
    engine = Engine(model, vocab)
    engine.chunk = 4
    others = [
        TextRow(engine.start("bb"), Sampling(0.5), row_key(1, i), engine.symbols, 10 + 7 * i)
        for i in range(3)
    ]
    for row in others:
        engine.add(row)
    engine.advance()  # the others are under way when ours joins, with other settings
    ours = TextRow(engine.start("a"), Sampling(), row_key(9, 0), engine.symbols, 50)
    engine.add(ours)
    sizes = []
    while engine.active:
        engine.advance()
        sizes.append(len(engine.rows))
    assert ours.text == alone
    assert (
        sizes[0] == 4 and sizes[-1] == 0 and sorted(sizes, reverse=True) == sizes
    )  # rows left as they ended
    assert [len(r.text) for r in others] == [10, 17, 24]


def test_greedy_rows_and_seeded_rows_are_reproducible():
    model, vocab = _model()
    a = [g.text for g in _texts(model, vocab, length=40, seed=4, num_samples=3)]
    assert a == [g.text for g in _texts(model, vocab, length=40, seed=4, num_samples=3)]
    assert a != [g.text for g in _texts(model, vocab, length=40, seed=5, num_samples=3)]
    greedy = {g.text for g in _texts(model, vocab, length=40, temperature=0, seed=1, num_samples=3)}
    assert len(greedy) == 1
