"""The Python API (`charrnn.load`, `charrnn.train`): the same text and figures as the command line, and
the typed errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import charrnn
from charrnn.cli import app
from charrnn.errors import BadCheckpoint, BadInput, BadSetting
from conftest import SMALL_TEXT, TINY_TRAIN_FLAGS

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARRNN_CACHE_DIR", str(folder / "cache"))
        text = folder / "small.txt"
        text.write_text(SMALL_TEXT, encoding="utf-8")
        result = invoke("train", text, "--out", folder / "run", *TINY_TRAIN_FLAGS)
        assert result.exit_code == 0, result.output
    return folder / "run"


def test_generate_and_stream_write_what_sample_writes(run):
    model = charrnn.load(run, device="cpu")
    cli = invoke("sample", run, "--prime", "the ", "-n", 80, "--seed", 3, "-T", "0.7", "--stop", "mat")
    assert cli.exit_code == 0, cli.output
    text = model.generate("the ", length=80, seed=3, temperature=0.7, stop="mat")
    assert cli.stdout == "the " + text + "\n"
    pieces = list(model.stream("the ", length=80, seed=3, temperature=0.7, stop="mat"))
    assert "".join(pieces) == text and len(text) > 0
    assert "Model lstm" in repr(model)


def test_samples_and_items_are_the_json_lines_of_the_cli(run):
    model = charrnn.load(run, device="cpu")
    cli = invoke("sample", run, "--num-samples", 3, "-n", 30, "--seed", 5, "--json")
    assert [json.loads(line) for line in cli.stdout.splitlines()] == [
        g.to_dict() for g in model.samples(3, length=30, seed=5)
    ]
    cli = invoke("sample", run, "--items", 4, "--delimiter", " ", "--seed", 2, "--unique", "--json")
    items = model.items(4, delimiter=" ", seed=2, unique=True)
    assert [json.loads(line) for line in cli.stdout.splitlines()] == [i.to_dict() for i in items]
    assert items.complete and items.counts.kept == 4


def test_score_is_what_evaluate_reports(run, tmp_path):
    model = charrnn.load(run, device="cpu")
    text = tmp_path / "t.txt"
    text.write_text(SMALL_TEXT[:500], encoding="utf-8")
    cli = invoke("evaluate", run, text, "--json")
    figures = json.loads(cli.stdout)
    score = model.score(SMALL_TEXT[:500])
    assert score.nats == pytest.approx(figures["nats"], rel=1e-6) and score.chars == figures["chars"]


def test_api_errors_are_typed_and_name_the_argument(run, tmp_path):
    with pytest.raises(BadCheckpoint):
        charrnn.load(tmp_path / "nothing.pt")
    model = charrnn.load(run, device="cpu")
    with pytest.raises(BadInput, match="never saw"):
        model.generate("Z§", length=5)
    with pytest.raises(BadSetting, match="temperature"):
        model.generate("the", temperature=-1)
    with pytest.raises(BadSetting, match="length"):
        model.generate("the", length=0)
    with pytest.raises(BadSetting, match="max_chars"):
        model.items(3, min_chars=4, max_chars=2)


def test_the_version_is_printed(run):
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"charrnn {charrnn.__version__}\n"
