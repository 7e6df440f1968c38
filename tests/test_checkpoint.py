import zipfile

import pytest
import torch

from charrnn import checkpoint as ckpt
from charrnn.checkpoint import atomic_save, load_checkpoint, model_from_checkpoint
from charrnn.errors import CharrnnError, NoSpace
from charrnn.model import CharRNN, ModelConfig
from charrnn.vocab import Vocabulary


def _blob():
    vocab = Vocabulary.from_text("hello world\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=1, hidden=8, embedding=4))
    return {
        "format": ckpt.FORMAT,
        "version": ckpt.VERSION,
        "model_config": model.config.to_dict(),
        "vocab": vocab.to_list(),
        "model": model.state_dict(),
    }


def test_round_trip_rebuilds_the_model(tmp_path):
    atomic_save(_blob(), tmp_path / "a.pt")
    model, vocab = model_from_checkpoint(load_checkpoint(tmp_path / "a.pt"))
    assert vocab.chars == sorted(set("hello world\n"))
    assert not model.training


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save(_blob(), path)
    before = path.read_bytes()

    def disk_full(obj, f):
        f.write(b"partial garbage")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        atomic_save(_blob(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    blob = _blob()
    blob["payload"] = _RunsCode(marker)
    torch.save(blob, tmp_path / "evil.pt")
    with pytest.raises(CharrnnError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_truncated_file(tmp_path):
    atomic_save(_blob(), tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CharrnnError, match="truncated or corrupted"):
        load_checkpoint(tmp_path / "cut.pt")


def test_damaged_tensor_data_is_detected(tmp_path):
    """Bytes flipped inside the weights keep the archive's layout valid; the CRC check catches them."""
    atomic_save(_blob(), tmp_path / "good.pt")
    data = bytearray((tmp_path / "good.pt").read_bytes())
    with zipfile.ZipFile(tmp_path / "good.pt") as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 16)
    local = info.header_offset  # the local header's own name and extra lengths (torch pads the extra field)
    name_len, extra_len = (
        int.from_bytes(data[local + 26 : local + 28], "little"),
        int.from_bytes(data[local + 28 : local + 30], "little"),
    )
    start = local + 30 + name_len + extra_len  # the member's raw bytes
    data[start : start + 8] = b"\xff" * 8
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(CharrnnError, match="corrupted"):
        load_checkpoint(tmp_path / "flipped.pt")


def test_non_finite_weights_are_refused(tmp_path):
    blob = _blob()
    blob["model"]["head.bias"][0] = float("nan")
    atomic_save(blob, tmp_path / "nan.pt")
    with pytest.raises(CharrnnError, match="non-finite"):
        model_from_checkpoint(load_checkpoint(tmp_path / "nan.pt"))


def test_a_real_write_failure_is_an_os_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save(_blob(), path)
    before = path.read_bytes()

    def torch_disk_full(obj, f):  # what torch.save raises when the disk fills mid-write
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4416 vs 4358")

    monkeypatch.setattr(torch, "save", torch_disk_full)
    with pytest.raises(NoSpace, match="is the disk full"):
        atomic_save(_blob(), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_text_file_and_foreign_torch_file(tmp_path):
    (tmp_path / "notes.pt").write_text("just some text")
    with pytest.raises(CharrnnError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "notes.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CharrnnError, match="not a charrnn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_other_format_version(tmp_path):
    blob = _blob()
    blob["version"] = 99
    atomic_save(blob, tmp_path / "future.pt")
    with pytest.raises(CharrnnError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(CharrnnError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CharrnnError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)


def test_folder_prefers_best(tmp_path):
    blob = _blob()
    atomic_save(blob, tmp_path / "last.pt")
    assert str(load_checkpoint(tmp_path).path).endswith("last.pt")
    atomic_save(blob, tmp_path / "best.pt")
    assert str(load_checkpoint(tmp_path).path).endswith("best.pt")


def test_incomplete_checkpoint(tmp_path):
    blob = _blob()
    del blob["model"]
    atomic_save(blob, tmp_path / "partial.pt")
    with pytest.raises(CharrnnError, match="incomplete .missing model"):
        load_checkpoint(tmp_path / "partial.pt")
    atomic_save(_blob(), tmp_path / "weights-only.pt")
    with pytest.raises(CharrnnError, match="cannot be resumed"):
        load_checkpoint(tmp_path / "weights-only.pt", for_resume=True)


def test_unreadable_checkpoint(tmp_path, monkeypatch):
    atomic_save(_blob(), tmp_path / "a.pt")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(ckpt, "open", denied, raising=False)
    with pytest.raises(CharrnnError, match="permission denied"):
        load_checkpoint(tmp_path / "a.pt")


def test_a_version_1_checkpoint_is_migrated_and_samples_the_same(tmp_path):
    """Version 1 kept one multi-layer fused module; its weights must land in the per-layer modules."""
    vocab = Vocabulary.from_text("hello world\n")
    config = ModelConfig(vocab_size=len(vocab), layers=2, hidden=8, embedding=4)
    torch.manual_seed(0)
    embed, fused, head = torch.nn.Embedding(len(vocab), 4), torch.nn.LSTM(4, 8, 2, batch_first=True), None
    head = torch.nn.Linear(8, len(vocab))
    weights = {"embed.weight": embed.weight.detach()}
    weights |= {f"rnn.{k}": v.detach() for k, v in fused.state_dict().items()}
    weights |= {f"head.{k}": v.detach() for k, v in head.state_dict().items()}
    blob = {"format": ckpt.FORMAT, "version": 1, "model_config": config.to_dict(), "vocab": vocab.to_list()}
    atomic_save({**blob, "model": weights}, tmp_path / "v1.pt")

    model, _ = model_from_checkpoint(load_checkpoint(tmp_path / "v1.pt"))
    ids = torch.randint(0, len(vocab), (2, 9))
    with torch.no_grad():
        expected = head(fused(embed(ids))[0])
        torch.testing.assert_close(model(ids)[0], expected)
