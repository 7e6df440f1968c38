"""Item mode: whole items from parallel streams, each filter exact, the give-up path, and `sample --items`
end to end with its errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.engine import Engine, Sampling, row_key
from charrnn.errors import BadSetting
from charrnn.items import ItemFilters, ItemRun
from charrnn.model import CharRNN, ModelConfig
from charrnn.novelty import ItemMatcher, build_index
from charrnn.sample import SamplingConfig, samples
from charrnn.vocab import Vocabulary

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _engine(bias_newline: float | None = None) -> Engine:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    vocab = Vocabulary.from_text("abcdefg\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=1, hidden=16, embedding=8)).eval()
    if bias_newline is not None:
        with torch.no_grad():
            model.head.bias[vocab.index("\n")] = bias_newline
    return Engine(model, vocab)


def _matcher(engine: Engine, corpus: str, delimiter: str = "\n") -> ItemMatcher:
    ids = engine.vocab.encode(corpus).numpy()
    return ItemMatcher(ids, engine.vocab, build_index(ids, engine.vocab), delimiter)


@pytest.mark.parametrize("delimiter", ["\n", "\n\n"])
def test_items_are_the_stream_cut_at_its_delimiters_never_cut_short(delimiter):
    engine = _engine()
    run = ItemRun(engine, 8, delimiter=delimiter, seed=3, streams=1, filters=ItemFilters(min_chars=0))
    items = list(run)
    text = next(samples(engine, delimiter, SamplingConfig(length=5000, seed=3))).text  # row_key(3, 0), too
    assert [i.text for i in items] == text.split(delimiter)[:8]
    assert all(i.finish == "delimiter" and delimiter not in i.text for i in items)
    assert run.counts.kept == run.counts.tries == 8


def test_the_prime_after_its_last_delimiter_begins_each_streams_first_item():
    engine = _engine()
    items = list(ItemRun(engine, 40, prime="\nab", seed=1, streams=4, length=200))
    firsts = [i.text for i in items if i.text.startswith("ab")]
    assert len(firsts) >= 4  # each stream's first item (others may start so by chance)


def test_each_filter_drops_exactly_what_it_should_and_counts_it():
    engine = _engine()
    plain = [i.text for i in ItemRun(engine, 200, seed=5, filters=ItemFilters(min_chars=0))]
    lengths = ItemFilters(min_chars=2, max_chars=4)
    kept = [i.text for i in ItemRun(engine, 50, seed=5, filters=lengths)]
    assert all(2 <= len(t) <= 4 for t in kept) and len(kept) == 50
    run = ItemRun(engine, 60, seed=5, filters=ItemFilters(min_chars=1, unique=True))
    unique = [i.text for i in run]
    assert len(set(unique)) == len(unique) == 60 and run.counts.dropped["repeat"] > 0
    assert run.counts.tries == 60 + sum(run.counts.dropped.values())

    # --novel: plant some of the items the model will write as whole lines of a corpus
    planted = sorted({t for t in plain[:40] if len(t) >= 2})[:5]
    corpus = "zz\n" + "\n".join(planted) + "\nabcabc\n"
    corpus = corpus.replace("z", "a")
    run = ItemRun(engine, 100, seed=5, filters=ItemFilters(novel=True), matcher=_matcher(engine, corpus))
    novel = [i.text for i in run]
    lines = set(corpus.split("\n"))
    assert not lines & set(novel) and run.counts.dropped["in_corpus"] > 0
    assert set(plain[:100]) - set(novel) <= lines  # nothing else was dropped

    # --max-overlap: an item sharing 30 characters with the corpus goes, one sharing fewer stays
    paragraphs = ItemRun(engine, 3, delimiter="\n\n", seed=2, filters=ItemFilters(min_chars=40), length=400)
    long_item = next(iter(paragraphs)).text
    shared = long_item[5:35]
    corpus = "gg\n" + shared + "\nfeed\n"
    matcher = _matcher(engine, corpus, "\n\n")
    assert matcher.longest_overlaps([long_item])[0] >= 30
    filters = ItemFilters(min_chars=40, max_overlap=20)
    run = ItemRun(engine, 3, delimiter="\n\n", seed=2, filters=filters, matcher=matcher, length=400)
    assert long_item not in [i.text for i in run] and run.counts.dropped["overlap"] >= 1


def test_a_model_that_never_writes_the_delimiter_gives_up_after_max_tries():
    engine = _engine(bias_newline=-1e4)
    run = ItemRun(engine, 5, seed=1, filters=ItemFilters(max_chars=6), max_tries=30)
    assert list(run) == []
    assert run.counts.tries == 30 and run.counts.dropped["too_long"] == 30 and not run.counts.complete
    assert run.counts.summary() == "kept 0 of 5 after 30 tries: 30 too long"


def test_seeded_item_runs_are_reproducible_and_settings_are_checked():
    engine = _engine()
    a = [i.text for i in ItemRun(engine, 30, seed=8, sampling=Sampling(0.8))]
    assert a == [i.text for i in ItemRun(engine, 30, seed=8, sampling=Sampling(0.8))]
    for bad in ({"n": 0}, {"n": 3, "max_tries": 0}, {"n": 3, "delimiter": ""}):
        with pytest.raises(BadSetting):
            ItemRun(engine, **bad)
    with pytest.raises(BadSetting, match="min_chars 5 is above max_chars 3"):
        ItemFilters(min_chars=5, max_chars=3).check()
    with pytest.raises(BadSetting, match="need the corpus"):
        ItemRun(engine, 3, filters=ItemFilters(novel=True))


def _names(count: int) -> list[str]:
    rng = random.Random(0)
    syllables = ["ka", "to", "ri", "mo", "na", "se", "lu", "vi", "an", "el"]
    return sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(count)})


@pytest.fixture(scope="module")
def names_run(tmp_path_factory):
    """A tiny model trained on a list of made-up names, one per line."""
    folder = tmp_path_factory.mktemp("names")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARRNN_CACHE_DIR", str(folder / "cache"))
        corpus = folder / "names.txt"
        corpus.write_text("\n".join(_names(3000)) + "\n", encoding="utf-8")
        flags = ["--layers", "1", "--hidden", "48", "--max-steps", "120", "--seq-len", "32", "-q"]
        result = invoke("train", corpus, "--out", folder / "run", "--lr", "0.01", *flags)
        assert result.exit_code == 0, result.output
    return folder


def test_sample_items_writes_n_lines_and_a_summary(names_run):
    run = names_run / "run"
    result = invoke("sample", run, "--items", 40, "--seed", 1, "-T", "0.8", "--unique", "--max-chars", 20)
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 41 and len(set(lines[:-1])) == 40
    assert result.stderr.startswith("kept 40 of 40 after ") and result.stderr.count("\n") == 1
    quiet = invoke(
        "sample", run, "--items", 40, "--seed", 1, "-T", "0.8", "--unique", "--max-chars", 20, "-q"
    )
    assert quiet.stdout == result.stdout and quiet.stderr == ""


def test_sample_items_json_lines_rank_by_likelihood(names_run):
    result = invoke("sample", names_run / "run", "--items", 10, "--seed", 2, "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 10
    for r in records:
        assert set(r) == {"text", "chars", "logprob", "nats_per_char", "finish"}
        assert r["chars"] == len(r["text"]) and r["finish"] == "delimiter" and r["logprob"] < 0
        assert r["nats_per_char"] == pytest.approx(-r["logprob"] / (r["chars"] + 1))


def test_novel_items_are_checked_against_the_recorded_corpus(names_run):
    corpus = (names_run / "names.txt").read_text(encoding="utf-8").split("\n")
    plain = invoke("sample", names_run / "run", "--items", 100, "--seed", 4, "-T", "0.5")
    copies = set(plain.stdout.split("\n")[:-1]) & set(corpus)
    assert copies  # a tiny model at a low temperature writes names of its corpus
    result = invoke("sample", names_run / "run", "--items", 100, "--seed", 4, "-T", "0.5", "--novel")
    assert result.exit_code == 0, result.output
    kept = result.stdout.split("\n")[:-1]
    assert len(kept) == 100 and not set(kept) & set(corpus)
    assert "in the corpus" in result.stderr.splitlines()[-1]


def test_novel_with_a_changed_or_missing_corpus_names_the_corpus_flag(names_run, tmp_path):
    import shutil

    copy = tmp_path / "names.txt"
    shutil.copy(names_run / "names.txt", copy)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        result = invoke(
            "train", "names.txt", "--out", "run", "--layers", "1", "--hidden", "8", "--max-steps", 2, "-q"
        )
        assert result.exit_code == 0, result.output
    copy.write_text("other\nnames\n" * 50, encoding="utf-8")
    changed = invoke("sample", tmp_path / "run", "--items", 3, "--novel")
    assert changed.exit_code == 1 and "has changed since" in changed.stderr and "--corpus" in changed.stderr
    assert changed.stderr.count("\n") == 1 and "Traceback" not in changed.stderr
    copy.unlink()
    gone = invoke("sample", tmp_path / "run", "--items", 3, "--novel")
    assert gone.exit_code == 1 and "--corpus" in gone.stderr and gone.stderr.count("\n") == 1
    given = invoke("sample", tmp_path / "run", "--items", 3, "--novel", "--corpus", names_run / "names.txt")
    assert given.exit_code == 0, given.output


def test_give_up_path_prints_what_it_kept_and_exits_1(names_run, tmp_path):
    ckpt = load_checkpoint(names_run / "run")
    weights = dict(ckpt.weights)
    bias = weights["head.bias"].clone()
    bias[ckpt.vocab.index("\n")] = -1e4
    weights["head.bias"] = bias
    never = tmp_path / "never.pt"
    ckpt.with_weights(weights, ckpt.averaged).save(never)
    result = invoke("sample", never, "--items", 5, "--max-chars", 8, "--max-tries", 25)
    assert result.exit_code == 1 and result.stdout == ""
    assert "kept 0 of 5 after 25 tries: 25 too long" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "status", "message"),
    [
        (["--items", "0"], 2, "--items"),
        (["--stop", ""], 1, "--stop must not be empty"),
        (["--items", "3", "--delimiter", ""], 1, "--delimiter must not be empty"),
        (["--items", "3", "--novel", "--delimiter", ""], 1, "--delimiter must not be empty"),
        (["--items", "3", "--min-chars", "5", "--max-chars", "3"], 1, "--min-chars 5 is above --max-chars 3"),
        (["--items", "3", "--max-overlap", "0"], 2, "--max-overlap"),
        (["--unique"], 1, "--unique works on items"),
        (["--items", "3", "--num-samples", "2"], 1, "not both"),
        (["--items", "3", "--delimiter", "Q"], 1, "never writes"),
        (["--stop", "\\x"], 1, "broken backslash escape"),
    ],
)
def test_bad_item_and_stop_flags_get_one_clear_error(names_run, flags, status, message):
    result = invoke("sample", names_run / "run", *flags)
    assert result.exit_code == status, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    if status == 1:
        assert result.stderr.count("\n") == 1


def test_sample_stop_ends_each_sample_on_its_own(names_run):
    result = invoke("sample", names_run / "run", "--num-samples", 5, "--seed", 3, "-n", 200, "--stop", "\\n")
    assert result.exit_code == 0, result.output
    samples_out = result.stdout[:-1].split("\n---\n")
    assert len(samples_out) == 5 and all("\n" not in s for s in samples_out)


def test_row_keys_differ_for_each_sample_and_seed():
    keys = {row_key(s, i) for s in range(5) for i in range(50)}
    assert len(keys) == 250
    assert np.uint64(row_key(2**70, 3)) == np.uint64(row_key(2**70 % 2**64, 3))


def _items_of_one_row(engine, cap: int, other_caps: list[int], count: int = 30) -> list:
    """The first `count` candidates (None: abandoned) of one row with key row_key(3, 0), cut at '\\n\\n',
    sharing its batch with rows of other caps (so chunks start and end elsewhere)."""
    from charrnn.items import ItemRow

    start, got = engine.start("\n\n"), []
    mine = ItemRow(start, Sampling(), row_key(3, 0), engine.symbols, "\n\n", [], "", cap, got.append)
    others = [
        ItemRow(start, Sampling(0.7), row_key(9, i), engine.symbols, "\n\n", [], "", c, lambda _: None)
        for i, c in enumerate(other_caps)
    ]
    for row in [*others, mine]:
        engine.add(row)
    while len(got) < count:
        engine.advance()
    engine.discard([mine, *others])
    return [None if g is None else (g.text, g.symbols, round(g.logprob, 4)) for g in got[:count]]


def test_an_item_rows_items_do_not_depend_on_its_batch_and_an_item_at_the_cap_is_kept():
    engine = _engine(bias_newline=1.5)  # newlines often, so short paragraphs too
    alone = _items_of_one_row(engine, 4, [])
    assert alone == _items_of_one_row(engine, 4, [1, 7, 50])
    assert any(item is not None and len(item[0]) == 4 for item in alone)  # exactly the cap: kept
    assert all(item is None or len(item[0]) <= 4 for item in alone) and None in alone


def test_a_delimiter_completed_after_the_primes_text_ends_the_first_item():
    engine = _engine()
    for seed in range(6):
        run = ItemRun(engine, 20, prime="\n\nab\n", delimiter="\n\n", seed=seed, length=300)
        items = [i.text for i in run]
        assert all("\n\n" not in t for t in items)
        assert sum(t.startswith("ab") for t in items) >= 1


def test_an_items_logprob_is_scoring_it_after_the_prime_and_the_items_before_it():
    import torch.nn.functional as F

    engine = _engine()
    items = list(ItemRun(engine, 6, seed=4, streams=1, filters=ItemFilters(min_chars=0)))
    text = "\n" + "".join(i.text + "\n" for i in items)  # the prime, then each item and its delimiter
    ids = engine.vocab.encode(text).long()
    with torch.inference_mode():
        logits, _ = engine.model(ids[None, :-1])
    logp = F.log_softmax(logits[0].double(), dim=-1)
    position = 0
    for item in items:
        n = len(item.text) + 1
        expected = float(
            logp[torch.arange(position, position + n), ids[position + 1 : position + 1 + n]].sum()
        )
        assert item.symbols == n and item.logprob == pytest.approx(expected, rel=1e-4, abs=1e-3)
        position += n


def test_items_from_a_byte_level_model_are_its_stream_cut_at_the_delimiter():
    torch.manual_seed(0)
    vocab = Vocabulary.for_bytes()
    model = CharRNN(ModelConfig(vocab_size=256, layers=1, hidden=16, embedding=8)).eval()
    allowed = [b for ch in "aé東\n" for b in ch.encode()]
    with torch.no_grad():
        bias = torch.full((256,), -1e4)
        bias[allowed] = 0.0
        model.head.bias.copy_(bias)
    engine = Engine(model, vocab)
    items = list(ItemRun(engine, 12, seed=1, streams=1, filters=ItemFilters(min_chars=0), length=400))
    text = next(samples(engine, "\n", SamplingConfig(length=3000, seed=1))).text
    assert [i.text for i in items] == text.split("\n")[:12]
    assert any("é" in i.text or "東" in i.text for i in items)  # multi-byte characters came out whole
    assert all(i.symbols == len((i.text + "\n").encode()) for i in items if "\ufffd" not in i.text)
