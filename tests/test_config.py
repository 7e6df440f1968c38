import pytest

from charrnn.config import TrainConfig, auto_settings
from charrnn.corpus import Corpus
from charrnn.session import TrainRequest, settle_configs
from charrnn.vocab import Vocabulary


@pytest.mark.parametrize(
    "chars, budget, hidden, dropout, lr, weight_decay",
    [
        (1_000_000, 120.0, 384, 0.2, 4e-3, 0.1),
        (1_000_000, 600.0, 512, 0.2, 3e-3, 0.1),
        (1_000_000, 1800.0, 512, 0.3, 3e-3, 0.2),
        (1_000_000, None, 512, 0.3, 3e-3, 0.2),  # steps or epochs only: a long run
        (50_000, 600.0, 256, 0.3, 4e-3, 0.1),
    ],
)
def test_auto_settings_follow_the_budget_and_corpus(chars, budget, hidden, dropout, lr, weight_decay):
    settings = auto_settings(chars, budget)
    assert (settings["hidden"], settings["dropout"], settings["lr"]) == (hidden, dropout, lr)
    assert settings["batch_size"] == 16 and settings["seq_len"] == 64
    assert settings["weight_decay"] == weight_decay


def test_a_given_or_chosen_width_sets_the_learning_rate():
    assert auto_settings(1_000_000, 120.0, hidden=512)["lr"] == 3e-3  # the budget rule would give 384
    assert auto_settings(1_000_000, 600.0, hidden=128)["lr"] == 4e-3
    assert auto_settings(1_000_000, 600.0, hidden=128)["hidden"] == 128


def _corpus(n: int) -> Corpus:
    text = ("abcdefghijklmnopqrstuvwxyz \n" * (n // 28 + 1))[:n]
    vocab = Vocabulary.from_text(text)
    return Corpus("c", vocab, vocab.encode(text))


def test_flags_given_win_over_auto_settings():
    train = {"max_time": "2m", "lr": 0.01, "weight_decay": 0.0}
    request = TrainRequest(corpus="c", settings={"hidden": 100, **train})
    settings = settle_configs(request, _corpus(1_200_000), None)
    model, config = settings.model, settings.train
    assert model.hidden == 100 and config.lr == 0.01 and config.weight_decay == 0.0  # given, 0 included
    assert model.dropout == 0.2 and config.batch_size == 16  # auto for a 2-minute budget
    assert config.max_time == 120.0


def test_default_budget_is_ten_minutes_with_the_large_model():
    settings = settle_configs(TrainRequest(corpus="c"), _corpus(1_200_000), None)
    model, config = settings.model, settings.train
    assert config.max_time == 600.0 and config.max_steps is None
    assert model.hidden == 512 and model.layers == 2 and config.lr == 3e-3
    assert config.weight_decay == 0.1
    assert TrainConfig().with_default_limit().max_time == 600.0


def test_precision_auto_takes_bf16_only_on_cpus_with_native_bf16(monkeypatch):
    import torch

    from charrnn import device

    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"sse2", "avx2", "fma"}))
    assert device.pick_autocast("auto", cpu) is None  # AVX2 only: bf16 would be emulated, slower
    assert device.pick_autocast("bf16", cpu) is torch.bfloat16  # asked for: given
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert device.pick_autocast("auto", cpu) is torch.bfloat16  # Zen 4, Cooper Lake
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx512f", "amx_tile", "amx_bf16"}))
    assert device.pick_autocast("auto", cpu) is torch.bfloat16  # Sapphire Rapids
    assert device.pick_autocast("fp32", cpu) is None
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset())  # not Linux, or flags unreadable
    assert device.pick_autocast("auto", cpu) is None


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path, monkeypatch):
    import builtins

    from charrnn import device

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 avx2\n\nflags : other\n")
    real_open = builtins.open
    monkeypatch.setattr(
        builtins, "open", lambda f, *a, **k: real_open(info if f == "/proc/cpuinfo" else f, *a, **k)
    )
    assert device.cpu_flags() == frozenset({"fpu", "sse2", "avx512_bf16", "avx2"})
    assert device.cpu_has_native_bf16()
