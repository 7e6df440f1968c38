"""Fine-tuning (`train --init`): vocabulary growth, neutral new rows, lineage, exact resume, refusals, and
the bundled starter model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import charrnn
from charrnn.bundled import BUNDLED, bundled_path
from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.corpus import Corpus, with_vocabulary
from charrnn.finetune import grown_vocabulary, grown_weights
from charrnn.model import CharRNN, ModelConfig
from charrnn.tokens import open_token_file, write_token_file
from charrnn.vocab import Vocabulary
from conftest import TINY_TRAIN_FLAGS

ASCII_TEXT = "the cat sat on the mat. the dog sat on the log. a bird sang in the tree.\n" * 60
NEW_TEXT = "the café sat on the mat. 東京 the dog sat on the log 🎉. naïve bird sang.\n" * 50
NEW_CHARS = sorted(set(NEW_TEXT) - set(ASCII_TEXT))
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def tiny(flags: list[str], steps: int = 20) -> list[str]:
    out = list(flags)
    out[out.index("--max-steps") + 1] = str(steps)
    return out


@pytest.fixture
def texts(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "ascii.txt").write_text(ASCII_TEXT, encoding="utf-8")
    (tmp_path / "new.txt").write_text(NEW_TEXT, encoding="utf-8")
    return tmp_path / "ascii.txt", tmp_path / "new.txt"


@pytest.fixture
def source(tmp_path, texts) -> Path:
    result = invoke("train", texts[0], "--out", tmp_path / "src", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 0, result.output
    return tmp_path / "src"


# ---- the vocabulary ------------------------------------------------------------------------------------
def test_an_extended_vocabulary_keeps_every_old_id_and_appends_the_new_characters():
    old = Vocabulary.from_text("banana split")
    grown, added = grown_vocabulary(old, Vocabulary.from_text("ça 🎉 banane"))
    assert grown.chars[: len(old)] == old.chars
    assert added == sorted({"ç", "🎉", "e"}) == grown.chars[len(old) :]
    assert [grown.index(c) for c in old.chars] == list(range(len(old)))
    ids = grown.encode("ça 🎉")
    assert grown.decode(ids) == "ça 🎉"
    assert Vocabulary.from_list(grown.to_list()).chars == grown.chars  # the checkpoint keeps the order
    assert grown_vocabulary(old, Vocabulary.from_text("nab"))[1] == []


def test_a_token_file_keeps_a_grown_vocabulary_in_its_order(tmp_path):
    vocab = Vocabulary.from_text("abc").extended("ab€")
    ids = vocab.encode("c€ab")
    write_token_file(tmp_path / "t.tok", vocab, 4, [ids.numpy()], {})
    back = open_token_file(tmp_path / "t.tok")
    assert back.vocab.chars == ["a", "b", "c", "€"]
    assert back.vocab.decode(back.ids) == "c€ab"


def test_a_corpus_is_re_encoded_in_the_grown_vocabulary_and_cached(tmp_path):
    text = "hello wörld " * 1000
    own = Vocabulary.from_text(text)
    corpus = Corpus("c", own, own.encode(text))
    grown = Vocabulary.from_text("xyz h").extended(own.chars)
    remapped = with_vocabulary(corpus, grown)
    assert remapped.vocab.chars == grown.chars
    assert grown.decode(remapped.ids) == text
    assert remapped.token_path is not None and remapped.token_path.is_file()
    again = with_vocabulary(corpus, grown)
    assert again.token_path == remapped.token_path and again.fingerprint == remapped.fingerprint
    with pytest.raises(ValueError):
        with_vocabulary(corpus, Vocabulary.from_text("hel"))


# ---- the new rows ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{}, {"input": "onehot", "embedding": 9}, {"weight_tying": True, "embedding": 16, "hidden": 16}],
    ids=["embedding", "onehot", "tied"],
)
def test_new_rows_start_neutral_and_old_logits_are_unchanged(options):
    torch.manual_seed(0)
    config = ModelConfig(
        **{"vocab_size": 9, "layers": 2, "hidden": 16, "embedding": 8, "dropout": 0.0, **options}
    )
    model = CharRNN(config).eval()
    from charrnn.checkpoint import Checkpoint

    ckpt = Checkpoint(config, Vocabulary.from_text("abcdefghi"), model.state_dict())
    weights = grown_weights(ckpt, 12)
    grown_config = ModelConfig.from_dict({**config.to_dict(), "vocab_size": 12})
    if config.input == "onehot":
        grown_config.embedding = 12
    grown = CharRNN(grown_config).eval()
    grown.load_state_dict(weights)
    ids = torch.randint(0, 9, (3, 11))
    with torch.no_grad():
        before, _ = model(ids)
        after, _ = grown(ids)
    assert after.shape[-1] == 12
    if not config.weight_tying:  # a tied head's new rows are the mean embedding: old logits still equal
        assert torch.equal(weights["head.weight"][9:], torch.zeros(3, config.hidden))
    torch.testing.assert_close(after[..., :9], before)
    assert torch.equal(weights["head.bias"][9:], model.head.bias.min().expand(3))
    if config.input == "embedding":
        torch.testing.assert_close(weights["embed.weight"][9:], model.embed.weight.mean(0).expand(3, -1))
    else:
        w = model.rnns[0].weight_ih_l0
        torch.testing.assert_close(
            weights["rnns.0.weight_ih_l0"][:, 9:], w.mean(1, keepdim=True).expand(-1, 3)
        )


# ---- end to end -----------------------------------------------------------------------------------------
def test_fine_tuning_grows_the_vocabulary_and_samples_and_scores_the_new_text(tmp_path, texts, source):
    result = invoke("train", texts[1], "--init", source, "--out", tmp_path / "ft", *TINY_TRAIN_FLAGS[:-1])
    assert result.exit_code == 0, result.output
    assert f"added {len(NEW_CHARS)} characters" in result.stderr
    assert "fine-tuning from" in result.stderr
    src, ft = load_checkpoint(source), load_checkpoint(tmp_path / "ft")
    assert ft.vocab.chars[: len(src.vocab)] == src.vocab.chars
    assert ft.vocab.chars[len(src.vocab) :] == NEW_CHARS
    assert ft.model_config.hidden == src.model_config.hidden and ft.model_config.vocab_size == len(ft.vocab)
    assert ft.lineage["path"] == str(src.path.resolve()) and ft.lineage["added"] == NEW_CHARS
    assert ft.lineage["corpus"]["sha256"] == src.corpus.sha256 and len(ft.lineage["fingerprint"]) == 64

    info = invoke("info", tmp_path / "ft", "--json")
    facts = json.loads(info.stdout)
    assert facts["initialised_from"]["added"] == NEW_CHARS and facts["flags"][-2] == "--init"
    panel = invoke("info", tmp_path / "ft")
    assert "fine-tuned from" in panel.stdout and "🎉" in panel.stdout and "東" in panel.stdout

    sampled = invoke("sample", tmp_path / "ft", "--prime", "東京 ", "--length", "40", "--seed", "3")
    assert sampled.exit_code == 0, sampled.output
    assert sampled.stdout.startswith("東京 ")
    items = invoke("sample", tmp_path / "ft", "--items", "3", "--novel", "--max-tries", "50", "--seed", "1")
    assert "has changed" not in items.output and "Traceback" not in items.output  # its corpus is found again
    scored = invoke("evaluate", tmp_path / "ft", texts[1], "--json")
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert report["unknown"] == 0 and report["chars"] == len(NEW_TEXT) - 1  # every character but the first


def test_a_fine_tuned_run_resumes_exactly(tmp_path, texts, source):
    straight = invoke(
        "train", texts[1], "--init", source, "--out", tmp_path / "a", *tiny(TINY_TRAIN_FLAGS, 30)
    )
    assert straight.exit_code == 0, straight.output
    first = invoke("train", texts[1], "--init", source, "--out", tmp_path / "b", *tiny(TINY_TRAIN_FLAGS, 20))
    assert first.exit_code == 0, first.output
    again = invoke("train", texts[1], "--resume", tmp_path / "b", "--max-steps", "30", "--quiet")
    assert again.exit_code == 0, again.output
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a.progress.step == b.progress.step == 30
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert b.lineage == a.lineage | {"fingerprint": b.lineage["fingerprint"]}  # same source, same record


def test_byte_level_fine_tuning_takes_invalid_utf8(tmp_path):
    (tmp_path / "a.bin").write_bytes(ASCII_TEXT.encode())
    (tmp_path / "b.bin").write_bytes(b"caf\xe9 \xff\xfe ok \xc3\xa9\n" * 200)
    made = invoke(
        "train", tmp_path / "a.bin", "--level", "byte", "--out", tmp_path / "src", *TINY_TRAIN_FLAGS
    )
    assert made.exit_code == 0, made.output
    result = invoke(
        "train", tmp_path / "b.bin", "--init", tmp_path / "src", "--out", tmp_path / "ft", *TINY_TRAIN_FLAGS
    )
    assert result.exit_code == 0, result.output
    assert "added" not in result.stderr
    ft = load_checkpoint(tmp_path / "ft")
    assert ft.level == "byte" and len(ft.vocab) == 256 and ft.lineage["added"] == []


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--resume", "{src}"], "give one of them"),
        (["--hidden", "64"], "--hidden 64 contradicts the --init model (--hidden 32)"),
        (["--layers", "2"], "--layers 2 contradicts the --init model"),
        (["--cell", "gru"], "--cell gru contradicts"),
        (["--level", "byte"], "--level byte contradicts the --init model, which is char-level"),
    ],
)
def test_refused_combinations(tmp_path, texts, source, flags, message):
    args = [f.format(src=source) for f in flags]
    result = invoke("train", texts[1], "--init", source, "--out", tmp_path / "x", *args, "--max-steps", "5")
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").glob("*.pt"))


def test_a_source_in_the_run_folder_is_never_overwritten(tmp_path, texts, source):
    result = invoke("train", texts[1], "--init", source, "--out", source, "--overwrite", "--max-steps", "3")
    assert result.exit_code != 0 and "give --out another folder" in result.output
    assert (source / "best.pt").is_file()


def test_a_character_level_run_cannot_start_from_a_byte_model(tmp_path, texts):
    made = invoke("train", texts[0], "--level", "byte", "--out", tmp_path / "src", *TINY_TRAIN_FLAGS)
    assert made.exit_code == 0, made.output
    result = invoke("train", texts[1], "--init", tmp_path / "src", "--level", "char", "--max-steps", "5")
    assert result.exit_code != 0 and "which is byte-level" in result.output


def test_a_missing_or_damaged_source_is_refused(tmp_path, texts, source):
    missing = invoke("train", texts[1], "--init", tmp_path / "nothing-here", "--max-steps", "5")
    assert missing.exit_code != 0 and "no such checkpoint file or run folder" in missing.output
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((source / "best.pt").read_bytes()[:5000])
    result = invoke("train", texts[1], "--init", damaged, "--max-steps", "5")
    assert result.exit_code != 0 and "not a readable checkpoint" in result.output
    assert "Traceback" not in result.output


def test_the_python_api_fine_tunes(tmp_path, texts, source):
    result = charrnn.train(
        texts[1],
        init=source,
        out=tmp_path / "api",
        hidden=32,
        max_steps=5,
        batch_size=4,
        seq_len=16,
        quiet=True,
    )
    assert result.progress.step == 5
    assert load_checkpoint(tmp_path / "api").lineage["added"] == NEW_CHARS


# ---- the bundled model -------------------------------------------------------------------------------------
def test_the_bundled_model_ships_and_loads_by_name():
    path = bundled_path("base")
    assert path is not None and path.is_file(), "charrnn/models/base.pt is missing"
    assert set(BUNDLED) == {"base"}
    ckpt = load_checkpoint("base")
    assert ckpt.level == "byte" and ckpt.path == path and ckpt.about
    info = invoke("info", "base")
    assert info.exit_code == 0 and "bundled model" in info.stdout
    sampled = invoke("sample", "base", "--prime", "Once upon a time", "--length", "40", "--seed", "1")
    assert sampled.exit_code == 0, sampled.output
    assert sampled.stdout.startswith("Once upon a time") and len(sampled.stdout) > 40


def test_a_local_folder_wins_over_a_bundled_name(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").symlink_to(source)
    assert load_checkpoint("base").path.resolve() == (source / "best.pt").resolve()
