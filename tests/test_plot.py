"""`charrnn plot`: images of the expected size, a terminal plot that fits, and one-line errors."""

import json
import struct
import sys
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.plot import read_run, run_labels
from conftest import SMALL_TEXT, TINY_TRAIN_FLAGS

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny trained runs of different widths, as a user would compare them."""
    folder = tmp_path_factory.mktemp("runs")
    text = folder / "small.txt"
    text.write_text(SMALL_TEXT, encoding="utf-8")
    runs = []
    for hidden in ("16", "32"):
        flags = [f if f != "32" else hidden for f in TINY_TRAIN_FLAGS]
        result = invoke("train", text, "--out", folder / f"h{hidden}", *flags)
        assert result.exit_code == 0, result.output
        runs.append(folder / f"h{hidden}")
    return runs


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_is_a_valid_image_of_the_asked_size(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "compare.png"
    result = invoke("plot", *two_runs, "--out", out, "--width", "641", "--height", "403")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"wrote {out}" in result.stderr
    assert png_size(out) == (641, 403)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written through a temp file
    default = tmp_path / "default.png"
    assert invoke("plot", two_runs[0], "--out", default).exit_code == 0
    assert png_size(default) == (1200, 800)
    pil = pytest.importorskip("PIL.Image")
    with pil.open(out) as image:
        image.verify()


def test_svg_parses_and_names_every_run(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "compare.SVG"
    result = invoke("plot", *two_runs, "--out", out)
    assert result.exit_code == 0, result.output
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    text = out.read_text()
    assert "h16" in text and "h32" in text and "validation" in text


def test_terminal_plot_fits_a_narrow_terminal(two_runs):
    pytest.importorskip("plotext")
    result = invoke("plot", *two_runs, env={"COLUMNS": "40", "LINES": "24"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) > 20
    assert max(len(line) for line in lines) <= 40
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes
    for words in ("loss by step", "loss by time", "learning rate", "training speed", "h16 val", "h32 train"):
        assert words in result.stdout
    wide = invoke("plot", *two_runs, "--width", "140", "--height", "14")
    assert wide.exit_code == 0, wide.output
    assert max(len(line) for line in wide.stdout.splitlines()) == 140  # two panels side by side


def test_a_run_with_a_single_evaluation_and_a_torn_line(tmp_path):
    pytest.importorskip("plotext")
    run = tmp_path / "one"
    run.mkdir()
    record = {
        "step": 10,
        "train_loss": 3.0,
        "val_loss": 2.9,
        "lr": 0.004,
        "elapsed": 1.5,
        "chars_per_sec": 900,
    }
    (run / "metrics.jsonl").write_text(json.dumps(record) + '\n{"step": 20, "train_lo')
    result = invoke("plot", run / "metrics.jsonl", "--width", "60")
    assert result.exit_code == 0, result.output
    assert "loss by step" in result.stdout
    assert "skipped line 2" in result.stderr  # the torn line, reported by read_records


def test_validation_free_runs_still_plot(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "noval"
    run.mkdir()
    records = [{"step": s, "train_loss": 3 - s / 100, "val_loss": None, "lr": 1e-3} for s in (10, 20, 30)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    series = read_run(run, "noval")
    assert series.points("step", "val_loss") == ([], [])
    assert series.points("step", "train_loss")[0] == [10, 20, 30]
    assert invoke("plot", run, "--out", tmp_path / "noval.png").exit_code == 0


def test_equal_folder_names_are_told_apart(tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent / "run").mkdir(parents=True)
    runs = [tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "a" / "run" / "metrics.jsonl"]
    assert run_labels(runs[:2]) == ["a/run", "b/run"]
    assert run_labels(runs) == ["a/run", "b/run", "a/run (2)"]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing", "no such file"),
        (lambda p: p, "has no metrics.jsonl"),
        (lambda p: (p / "metrics.jsonl").write_text("") or p, "holds no evaluations yet"),
    ],
)
def test_missing_or_empty_logs_are_one_line_errors(make, expected, tmp_path):
    result = invoke("plot", make(tmp_path))
    assert result.exit_code == 1
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "charrnn train" in result.stderr or "eval-every" in result.stderr


def test_bad_image_names_are_refused(two_runs, tmp_path):
    result = invoke("plot", two_runs[0], "--out", tmp_path / "x.jpg")
    assert result.exit_code == 1 and ".png or .svg" in result.stderr
    result = invoke("plot", two_runs[0], "--out", tmp_path / "no" / "x.png")
    if "not installed" not in result.stderr:
        assert result.exit_code == 1 and "does not exist" in result.stderr


@pytest.mark.parametrize("library, args", [("matplotlib", ["--out", "x.png"]), ("plotext", [])])
def test_without_the_libraries_one_line_says_how_to_get_them(library, args, two_runs, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, library, None)  # `import library` now fails
    result = invoke("plot", two_runs[0], *args)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert f"needs {library}" in result.stderr and "pip install 'charrnn[plot]'" in result.stderr
    assert not (tmp_path / "x.png").exists()
