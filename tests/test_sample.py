import torch

from charrnn.model import CharRNN, ModelConfig
from charrnn.sample import SamplingConfig, choose, filter_logits, generate
from charrnn.vocab import Vocabulary


def _model_and_vocab():
    torch.manual_seed(0)
    vocab = Vocabulary.from_text("abcdefgh\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=1, hidden=16, embedding=8)).eval()
    return model, vocab


def _text(model, vocab, **kw):
    config = SamplingConfig(**kw)
    rows = [ids.tolist() for ids in generate(model, vocab, "abc", config)]
    return ["".join(vocab.chars[r[s]] for r in rows) for s in range(config.num_samples)]


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert choose(logits, 0.0, None).tolist() == [1, 0]


def test_top_k_keeps_only_the_k_best():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[False, True, True, False]]
    g = torch.Generator().manual_seed(0)
    draws = {int(choose(logits, 5.0, g, top_k=2)) for _ in range(200)}
    assert draws == {1, 2}


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()


def test_low_temperature_sharpens_high_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(4000, 3)
    g = torch.Generator().manual_seed(0)
    cold = choose(logits, 0.2, g).bincount(minlength=3)
    hot = choose(logits, 5.0, g).bincount(minlength=3)
    assert cold[0] > 3900
    assert hot[2] > 900  # near-uniform: the least likely class is drawn often


def test_same_seed_same_text_other_seed_other_text():
    model, vocab = _model_and_vocab()
    a = _text(model, vocab, length=80, seed=5)
    assert a == _text(model, vocab, length=80, seed=5)
    assert a != _text(model, vocab, length=80, seed=6)


def test_samples_in_a_batch_differ_and_have_the_length_asked():
    model, vocab = _model_and_vocab()
    texts = _text(model, vocab, length=60, seed=1, num_samples=3)
    assert len(texts) == 3 and all(len(t) == 60 for t in texts)
    assert len(set(texts)) == 3


def test_greedy_generation_is_deterministic_whatever_the_seed():
    model, vocab = _model_and_vocab()
    assert _text(model, vocab, length=40, temperature=0, seed=1) == _text(
        model, vocab, length=40, temperature=0, seed=2
    )
