import math

import torch
import torch.nn.functional as F

from charrnn.evaluate import score_ids, score_text
from charrnn.model import CharRNN, ModelConfig
from charrnn.vocab import Vocabulary


def test_uniform_model_scores_log_vocab_size():
    model = CharRNN(ModelConfig(vocab_size=10, layers=1, hidden=8, embedding=4, dropout=0.0))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    score = score_ids(model, torch.randint(0, 10, (777,)))
    assert score.chars == 776
    assert math.isclose(score.nats, math.log(10), rel_tol=1e-6)
    assert math.isclose(score.bpc, math.log2(10), rel_tol=1e-6)
    assert math.isclose(score.perplexity, 10, rel_tol=1e-5)


def _one_stream_by_hand(model, ids):
    """Cross-entropy computed one character at a time, the slowest and plainest way."""
    state, total = None, 0.0
    with torch.no_grad():
        for t in range(len(ids) - 1):
            logits, state = model(ids[t : t + 1].view(1, 1), state)
            total += F.cross_entropy(logits.view(1, -1), ids[t + 1 : t + 2]).item()
    return total / (len(ids) - 1)


def test_matches_a_hand_computation_single_stream():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=6, layers=2, hidden=12, embedding=4, dropout=0.5))
    ids = torch.randint(0, 6, (300,))
    score = score_ids(model, ids, chunk_len=64)  # chunks carry the state: must equal one pass
    assert score.chars == 299
    assert math.isclose(score.nats, _one_stream_by_hand(model.eval(), ids), rel_tol=1e-5)


def test_parallel_streams_score_every_character_once():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=6, layers=1, hidden=12, embedding=4, dropout=0.0)).eval()
    ids = torch.randint(0, 6, (2000,))  # 3 streams of 667 (the last one padded)
    score = score_ids(model, ids, chunk_len=100, warmup=0)
    assert score.chars == 1999
    # by hand: each stream restarts from a zero state; the boundary character is predicted by the
    # previous stream's last step
    bounds = [0, 667, 1334, 2000]
    total = 0.0
    with torch.no_grad():
        for s in range(3):
            lo, hi = bounds[s], bounds[s + 1]
            stream = ids[lo : min(hi + 1, 2000)]
            logits, _ = model(stream[:-1].view(1, -1))
            total += F.cross_entropy(logits.view(-1, 6), stream[1:], reduction="sum").item()
    assert math.isclose(score.nats, total / 1999, rel_tol=1e-5)


def test_unknown_characters_are_counted_and_skipped():
    vocab = Vocabulary.from_text("ab")
    model = CharRNN(ModelConfig(vocab_size=2, layers=1, hidden=4, embedding=2))
    score = score_text(model, vocab, "abxab€ba")
    assert score.unknown == 2 and score.chars == 5


def test_streams_warm_up_on_the_characters_before_them():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=6, layers=2, hidden=12, embedding=4, dropout=0.0)).eval()
    ids = torch.randint(0, 6, (2000,))  # 3 streams of 667; streams 1 and 2 first read 50 characters
    score = score_ids(model, ids, chunk_len=100, warmup=50)
    assert score.chars == 1999
    bounds = [0, 667, 1334, 2000]
    total = 0.0
    with torch.no_grad():
        for s in range(3):
            lo, hi = bounds[s], bounds[s + 1]
            state = None
            if s > 0:
                _, state = model(ids[lo - 50 : lo].view(1, -1))
            stream = ids[lo : min(hi + 1, 2000)]
            logits, _ = model(stream[:-1].view(1, -1), state)
            total += F.cross_entropy(logits.view(-1, 6), stream[1:], reduction="sum").item()
    assert math.isclose(score.nats, total / 1999, rel_tol=1e-5)
