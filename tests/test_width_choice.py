"""The width chosen from measured speed (width_choice.py): the rule, the measuring, the cache and the CLI.

Speeds here are faked (a timer that returns figures instead of timing), so nothing depends on this
machine's speed; the real figures come from benchmarks/width_choice.py, run alone."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from typer.testing import CliRunner

from charrnn import width_choice
from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.config import TrainConfig
from charrnn.model import ModelConfig
from charrnn.width_choice import (
    CANDIDATE_WIDTHS,
    SpeedCache,
    applies,
    choose_for_run,
    choose_width,
    measure_speeds,
)
from conftest import SMALL_TEXT

runner = CliRunner()

# Training chars/s per width: a slow 2-core host (measured on one, 2 threads) and a machine 20x faster
SLOW = {128: 31_000.0, 256: 16_000.0, 384: 5_100.0, 512: 3_500.0, 768: 1_400.0}
FAST = {w: 20 * s for w, s in SLOW.items()}


class FakeTimer:
    """Returns a fixed speed per width and a fixed time per call, and counts the calls."""

    def __init__(self, speeds: dict[int, float], seconds: float = 0.01):
        self.speeds, self.seconds, self.calls = speeds, seconds, []

    def __call__(self, model: ModelConfig, seconds: float) -> tuple[float, float]:
        self.calls.append((model.hidden, seconds))
        return self.speeds[model.hidden], self.seconds


def test_a_faster_machine_gets_a_wider_model_for_the_same_budget():
    slow, fast = choose_width(SLOW, 600, 1_000_000), choose_width(FAST, 600, 1_000_000)
    assert fast.width > slow.width
    assert choose_width(FAST, 1800, 1_000_000).width >= fast.width  # a longer budget: never narrower
    assert choose_width(SLOW, 120, 1_000_000).width <= slow.width  # a shorter one: never wider
    line = slow.describe()
    assert line.startswith(f"width 2x{slow.width} chosen: ") and "epochs in 10m00s" in line
    assert all(f"2x{w} " in line for w in CANDIDATE_WIDTHS)


def test_each_prediction_is_its_curve_at_the_characters_the_budget_trains():
    choice = choose_width(SLOW, 600, 1_000_000, eval_chars=1_000)  # one evaluation: the final one
    for w, speed in SLOW.items():
        chars = speed * 600 * width_choice.TRAINING_SHARE
        assert choice.predicted[w] == pytest.approx(width_choice.CURVES[w].at(chars - 1_000 / 3))
    assert choice.predicted[choice.width] == min(choice.predicted.values())
    with pytest.raises(ValueError):
        choose_width({}, 600, 1_000_000)


@pytest.mark.parametrize("speeds", [SLOW, FAST], ids=["slow", "fast"])
@pytest.mark.parametrize("budget", [120.0, 600.0, 1800.0, 7200.0])
@pytest.mark.parametrize("start", [256, 512])
def test_measuring_a_few_widths_finds_the_width_timing_all_would(speeds, budget, start):
    timer = FakeTimer(speeds)
    chars_of = functools.partial(width_choice.trained_chars, budget=budget)
    found, spent = measure_speeds(ModelConfig(vocab_size=65), chars_of, 100.0, timer, start=start)
    timed = [w for w, _ in timer.calls]
    assert timed[0] == start and len(timed) - len(set(timed)) <= 2  # two widths at most timed twice
    assert choose_width(found, budget, 10**6).width == choose_width(speeds, budget, 10**6).width
    assert spent == pytest.approx(0.01 * len(timed))
    assert all(0 < seconds <= width_choice.PROBE_SECONDS_PER_WIDTH for _, seconds in timer.calls)


def test_the_two_best_are_timed_again_and_keep_their_faster_figure():
    class Drifting(FakeTimer):  # the host was busy while 256 was first timed
        def __call__(self, model, seconds):
            speed, spent = super().__call__(model, seconds)
            first_256 = model.hidden == 256 and [w for w, _ in self.calls].count(256) == 1
            return (speed / 2 if first_256 else speed), spent

    timer = Drifting(SLOW)
    chars_of = functools.partial(width_choice.trained_chars, budget=120.0)
    found, _ = measure_speeds(ModelConfig(vocab_size=65), chars_of, 100.0, timer, start=384)
    timed = [w for w, _ in timer.calls]
    assert timed.count(256) == 2 and found[256] == SLOW[256]
    assert choose_width(found, 120.0, 10**6).width == choose_width(SLOW, 120.0, 10**6).width


def test_known_widths_are_not_timed_again_and_the_allowance_bounds_the_timing():
    model = ModelConfig(vocab_size=65)
    timer = FakeTimer(SLOW)
    measure_speeds(model, lambda speed: speed * 600, 100.0, timer, known=dict(SLOW))
    assert timer.calls == []
    timer = FakeTimer(SLOW, seconds=1.0)
    found, spent = measure_speeds(model, lambda speed: speed * 600, 1.5, timer, start=512)
    assert len(timer.calls) == 2 and spent == 2.0  # the second began with time left; no third
    assert all(seconds <= 1.5 / width_choice.TIMINGS_EXPECTED for _, seconds in timer.calls)


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"max_time": 600.0, "threads": 2, **kw})


def test_the_cache_is_used_on_the_second_run_and_ignored_when_threads_or_settings_change(tmp_path):
    cache = SpeedCache(tmp_path / "speeds.json")
    model, device = ModelConfig(vocab_size=65), torch.device("cpu")
    first = FakeTimer(SLOW)
    choice = choose_for_run(model, _config(), 1_000_000, device, None, cache, first)
    assert first.calls and not choice.cached
    again = FakeTimer(SLOW)
    second = choose_for_run(model, _config(), 1_000_000, device, None, cache, again)
    assert again.calls == [] and second.cached and second.width == choice.width and second.probe_seconds == 0
    for config in (_config(threads=1), _config(batch_size=32), _config(seq_len=128)):
        other = FakeTimer(FAST)
        assert not choose_for_run(model, config, 1_000_000, device, None, cache, other).cached
        assert other.calls
    other = FakeTimer(FAST)
    choose_for_run(ModelConfig(vocab_size=65, dropout=0.0), _config(), 1_000_000, device, None, cache, other)
    assert other.calls  # no dropout: another step cost
    torch.set_num_threads(2)
    entries = json.loads((tmp_path / "speeds.json").read_text())
    assert len(entries) == 5 and all(e["key"]["torch"] == torch.__version__ for e in entries.values())


def test_a_damaged_cache_counts_as_empty_and_is_rewritten(tmp_path):
    path = tmp_path / "speeds.json"
    path.write_text("{not json")
    cache = SpeedCache(path)
    timer = FakeTimer(SLOW)
    choose_for_run(ModelConfig(vocab_size=65), _config(), 1_000_000, torch.device("cpu"), None, cache, timer)
    assert timer.calls and len(json.loads(path.read_text())) == 1
    path.write_text(json.dumps({"x": {"key": "other", "speeds": "bad"}}))
    assert SpeedCache(path).get({"a": 1}) == {}


def test_a_budget_too_short_to_measure_keeps_the_budget_rule_unless_the_cache_knows(tmp_path):
    cache = SpeedCache(tmp_path / "speeds.json")
    model, device, timer = ModelConfig(vocab_size=65), torch.device("cpu"), FakeTimer(SLOW)
    short = _config(max_time=0.5 * width_choice.MIN_PROBE_SECONDS / width_choice.PROBE_SHARE)
    assert choose_for_run(model, short, 10**6, device, None, cache, timer) is None and not timer.calls
    choose_for_run(model, _config(), 10**6, device, None, cache, timer)  # a 10-minute run fills the cache
    timer.calls.clear()
    choice = choose_for_run(model, short, 10**6, device, None, cache, timer)
    assert choice is not None and choice.cached and not timer.calls
    torch.set_num_threads(2)


def test_which_runs_choose_by_measured_speed():
    big, small = 1_000_000, 100_000
    assert applies({}, _config(), big, False)
    assert not applies({"hidden": 256}, _config(), big, False)
    assert not applies({"cell": "gru"}, _config(), big, False)
    assert not applies({"layers": 3}, _config(), big, False)
    assert not applies({}, _config(max_steps=100), big, False)
    assert not applies({}, _config(epochs=2), big, False)
    assert not applies({}, _config(max_time=None, max_steps=5), big, False)
    assert not applies({}, _config(), small, False)  # small corpora keep their rule (overfitting)
    assert not applies({}, _config(), big, True)  # ranks would have to agree on one measurement


@pytest.fixture
def big_text_file(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text(SMALL_TEXT * (260_000 // len(SMALL_TEXT) + 1), encoding="utf-8")
    return path


def _train(path, out, *flags):
    return runner.invoke(
        app, ["train", str(path), "--out", str(out), "--max-time", "2s", "--val-chars", "500", "--batch-size",
              "4", "--seq-len", "16", "--eval-every", "5", *flags],
    )  # fmt: skip


def test_train_without_a_width_measures_chooses_and_says_why(tmp_path, big_text_file, monkeypatch):
    timer = FakeTimer(FAST, seconds=0.001)
    monkeypatch.setattr(width_choice, "step_timer", lambda *a: timer)
    monkeypatch.setattr(width_choice, "MIN_PROBE_SECONDS", 0.0)  # a 2-second budget measures too
    result = _train(big_text_file, tmp_path / "run")
    assert result.exit_code == 0, result.output
    chosen = choose_width(FAST, 2.0, 234_000, eval_chars=500, eval_every_chars=5 * 4 * 16).width
    assert f"width 2x{chosen} chosen: " in result.stderr and "speeds measured in" in result.stderr
    assert timer.calls
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.model_config.hidden == chosen
    assert ckpt.train_config.lr == (4e-3 if chosen <= 384 else 3e-3)  # the learning rate of that width
    # the second run reads the cache
    timer.calls.clear()
    result = _train(big_text_file, tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert timer.calls == [] and "cached speeds" in result.stderr
    torch.set_num_threads(2)


def test_a_given_width_or_a_step_limit_skips_the_measuring(tmp_path, big_text_file, monkeypatch):
    timer = FakeTimer(SLOW)
    monkeypatch.setattr(width_choice, "step_timer", lambda *a: timer)
    assert _train(big_text_file, tmp_path / "a", "--hidden", "32", "--layers", "1").exit_code == 0
    steps = _train(big_text_file, tmp_path / "b", "--max-steps", "3", "--hidden", "32")
    assert steps.exit_code == 0, steps.output
    assert timer.calls == [] and "chosen:" not in steps.stderr
    assert load_checkpoint(tmp_path / "a").train_config.lr == 4e-3  # the given width's learning rate
