import math
import os
import signal

import pytest
import torch
from typer.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.config import TrainConfig, parse_duration
from charrnn.corpus import Corpus
from charrnn.errors import CharrnnError
from charrnn.model import ModelConfig
from charrnn.train import Trainer, lr_at
from charrnn.vocab import Vocabulary
from conftest import TINY_TRAIN_FLAGS


def make_corpus(text: str) -> Corpus:
    vocab = Vocabulary.from_text(text)
    return Corpus("test", vocab, vocab.encode(text))


def tiny_model(vocab_size: int, dropout: float = 0.0, cell: str = "lstm") -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, cell=cell, layers=2, hidden=32, embedding=16, dropout=dropout)


def test_tiny_model_overfits_a_short_text(tmp_path):
    text = "the quick brown fox jumps over the lazy dog 0123456789\n" * 30
    corpus = make_corpus(text)
    config = TrainConfig(
        batch_size=8,
        seq_len=32,
        lr=1e-2,
        max_steps=250,
        eval_every=50,
        val_fraction=0.0,
        warmup_steps=10,
        weight_decay=0.0,  # capacity, not regularisation, is what this test checks
    )
    result = Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path).run()
    assert result.stopped_by == "limit"
    assert result.progress.history[-1]["train_loss"] < 0.1
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()


def _interrupt_at(step: int):
    def hook(trainer):
        if trainer.progress.step == step:
            os.kill(os.getpid(), signal.SIGINT)

    return hook


@pytest.mark.parametrize("cell, state_reset", [("lstm", 0.0), ("gru", 0.0), ("lstm", 0.3)])
def test_interrupt_and_resume_follows_the_same_trajectory(tmp_path, cell, state_reset):
    text = "to be or not to be, that is the question; whether tis nobler in the mind to suffer\n" * 12
    corpus = make_corpus(text)
    model = tiny_model(len(corpus.vocab), dropout=0.2, cell=cell)  # dropout: the RNG must be restored too
    config = TrainConfig(
        batch_size=4, seq_len=16, max_steps=40, eval_every=7, seed=3, warmup_steps=5, state_reset=state_reset
    )

    straight = Trainer(corpus, model, config, tmp_path / "straight")
    straight_result = straight.run()

    first = Trainer(corpus, model, config, tmp_path / "split", on_step=_interrupt_at(20))
    first_result = first.run()
    assert first_result.stopped_by == "signal:SIGINT"
    assert first_result.progress.step == 20
    blob = load_checkpoint(tmp_path / "split" / "last.pt")
    assert blob.progress.step == 20
    resumed = Trainer(corpus, model, config, tmp_path / "split", resume=blob)
    resumed_result = resumed.run()

    assert resumed_result.progress.step == straight_result.progress.step == 40
    for name, weight in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], weight, msg=name)
    losses = lambda r: [(h["step"], h["train_loss"], h["val_loss"]) for h in r.progress.history]  # noqa: E731
    straight_losses, resumed_losses = losses(straight_result), losses(resumed_result)
    assert [s for s, _, _ in straight_losses] == [s for s, _, _ in resumed_losses]
    for (_, a, b), (_, c, d) in zip(straight_losses, resumed_losses, strict=True):
        assert math.isclose(a, c, rel_tol=1e-5) and math.isclose(b, d, rel_tol=1e-5)


def test_divergence_stops_and_keeps_the_best_checkpoint(tmp_path):
    corpus = make_corpus("abcdefghij klmnop\n" * 40)

    def poison(trainer):
        if trainer.progress.step == 12:
            with torch.no_grad():
                trainer.model.head.weight.fill_(float("nan"))

    config = TrainConfig(batch_size=4, seq_len=16, max_steps=60, eval_every=10)
    result = Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path, on_step=poison).run()
    assert result.stopped_by == "diverged"
    assert result.progress.step < 60
    best = load_checkpoint(tmp_path / "best.pt")
    assert best.progress.step == 10
    assert all(torch.isfinite(t).all() for t in best.weights.values())


def test_a_finished_run_cannot_resume_without_a_higher_limit(tmp_path):
    corpus = make_corpus("abcdefghij klmnop\n" * 40)
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=5, eval_every=100)
    Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path).run()
    blob = load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(CharrnnError, match="raise --max-steps"):
        Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path, resume=blob).run()


def test_time_budget_stops_training(tmp_path):
    corpus = make_corpus("abcdefghij klmnop\n" * 40)
    config = TrainConfig(batch_size=4, seq_len=16, max_time=1.0, eval_every=50)
    result = Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path).run()
    assert result.stopped_by == "limit"
    assert 0.9 < result.progress.elapsed < 3.0


def test_time_spent_before_training_counts_against_the_budget(tmp_path):
    corpus = make_corpus("abcdefghij klmnop\n" * 40)
    config = TrainConfig(batch_size=4, seq_len=16, max_time=1.5, eval_every=50)
    result = Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path, spent=1.0).run()
    assert result.stopped_by == "limit" and 1.4 < result.progress.elapsed < 2.5
    assert result.progress.chars_seen < 0.9 * result.chars_per_sec  # trained about half a second, not 1.5


def test_learning_rate_warms_up_then_decays_over_the_budget():
    config = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(config, 0, 0.0) == pytest.approx(0.1)
    assert lr_at(config, 9, 0.0) == pytest.approx(1.0)
    assert lr_at(config, 100, 0.5) == pytest.approx(0.55)
    assert lr_at(config, 100, 1.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("1h30m", 5400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "-5m", "0s", "m10"])
def test_bad_durations(text):
    with pytest.raises(CharrnnError, match="max_time"):
        parse_duration(text)


def test_a_second_signal_aborts_at_once_and_leaves_whole_files(tmp_path):
    from charrnn.train import Aborted

    corpus = make_corpus("abcdefghij klmnop\n" * 40)

    def double_ctrl_c(trainer):
        if trainer.progress.step == 12:
            os.kill(os.getpid(), signal.SIGINT)  # first: finish the step, save, stop
            os.kill(os.getpid(), signal.SIGINT)  # second: stop now

    config = TrainConfig(batch_size=4, seq_len=16, max_steps=60, eval_every=5)
    with pytest.raises(Aborted) as e:
        Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path, on_step=double_ctrl_c).run()
    assert e.value.signum == signal.SIGINT
    assert load_checkpoint(tmp_path / "last.pt").progress.step == 10
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_huge_seeds_work_across_epochs(tmp_path):
    corpus = make_corpus("abcdefghij klmnop\n" * 10)
    config = TrainConfig(batch_size=2, seq_len=8, epochs=3, eval_every=100, seed=2**63 - 1)
    result = Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path).run()
    assert result.progress.epoch == 3


def test_bf16_autocast_on_the_cpu_trains_and_resumes_exactly(tmp_path, small_text_file):
    runner = CliRunner()
    base = [f for f in TINY_TRAIN_FLAGS if f != "--quiet"]
    whole = runner.invoke(
        app, ["train", str(small_text_file), "--out", str(tmp_path / "w"), *base, "--precision", "bf16"]
    )
    assert whole.exit_code == 0, whole.output
    assert "cpu bf16 autocast" in whole.stderr
    flags = [*TINY_TRAIN_FLAGS, "--precision", "bf16"]
    flags[flags.index("--max-steps") + 1] = "20"
    assert (
        runner.invoke(app, ["train", str(small_text_file), "--out", str(tmp_path / "p"), *flags]).exit_code
        == 0
    )
    again = runner.invoke(
        app, ["train", str(small_text_file), "--resume", str(tmp_path / "p"), "--max-steps", "30", "--quiet"]
    )
    assert again.exit_code == 0, again.output
    a, b = load_checkpoint(tmp_path / "w" / "last.pt"), load_checkpoint(tmp_path / "p" / "last.pt")
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_state_reset_blanks_some_streams_and_is_the_same_on_every_run(tmp_path):
    corpus = make_corpus("abcdefghij klmnop\n" * 40)
    config = TrainConfig(batch_size=8, seq_len=8, max_steps=2, eval_every=100, seed=1, state_reset=0.5)
    trainer = Trainer(corpus, tiny_model(len(corpus.vocab)), config, tmp_path)
    state = (torch.ones(2, 8, 32), torch.ones(2, 8, 32))
    first = trainer._reset_some_streams(state, step=7)
    again = trainer._reset_some_streams(state, step=7)
    blank = (first[0][0, :, 0] == 0).tolist()
    assert 0 < sum(blank) < 8  # some streams start blank, the others keep their state
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert (first[1][:, blank] == 0).all() and (first[1][:, [not b for b in blank]] == 1).all()
    other = trainer._reset_some_streams(state, step=8)
    assert not torch.equal(other[0], first[0])
