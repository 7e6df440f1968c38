"""Pack a trained checkpoint as a bundled model: bfloat16 weights, no optimiser or training state.

    python scripts/pack_model.py RUN_FOLDER_OR_PT OUT.pt "key=value" ...

The key=value pairs become the file's `about` (what `charrnn info` shows for a bundled model). The training
facts (steps, time, best validation loss, the flags) are added from the checkpoint itself. The corpus's
path is dropped (it means nothing on another machine); its name, size and fingerprint stay.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from charrnn.checkpoint import CorpusFacts, load_checkpoint  # noqa: E402
from charrnn.config import format_duration  # noqa: E402
from charrnn.settings import reproduce_flags  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: python scripts/pack_model.py RUN_OR_PT OUT.pt [key=value ...]")
    ckpt = load_checkpoint(sys.argv[1])
    about = dict(arg.split("=", 1) for arg in sys.argv[3:])
    p = ckpt.progress
    if p is not None:
        about.setdefault(
            "trained", f"{p.step:,} steps, {format_duration(p.elapsed)}, {p.chars_seen:,} bytes seen"
        )
        about.setdefault(
            "best validation loss",
            f"{p.best_val:.4f} nats/{'byte' if ckpt.vocab.is_bytes else 'char'} "
            "(float32 weights, before packing)",
        )
        flags = reproduce_flags(ckpt.model_config.to_dict(), ckpt.train_config.to_dict(), ckpt.level)
        about.setdefault("trained with", " ".join(flags))
    weights = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in ckpt.weights.items()}
    corpus = CorpusFacts(ckpt.corpus.name, ckpt.corpus.chars, ckpt.corpus.sha256, {})
    packed = replace(ckpt, weights=weights, training=None, corpus=corpus, about=about, lineage={})
    packed.save(sys.argv[2])
    print(f"{sys.argv[2]}: {Path(sys.argv[2]).stat().st_size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
