"""A checkpoint's weights as a safetensors file that any program can read, with what a reader needs in
its metadata.

Layout: one tensor per weight, named as the model's state_dict names them (float32, C order):
    embed.weight                 (V, E)      the character embedding (absent with one-hot input)
    rnns.K.weight_ih_l0          (G*H, D)    layer K's input weights, G = 4 (LSTM: gates i, f, g, o),
                                             3 (GRU: r, z, n) or 1 (RNN); D = E (or V) for K = 0, else H
    rnns.K.weight_hh_l0          (G*H, H)    layer K's recurrent weights
    rnns.K.bias_ih_l0, bias_hh_l0 (G*H,)     its two biases (PyTorch's convention: both are added)
    rnns.K.peephole_l0           (3, H)      peephole-lstm only: the i, f, o peephole weights
    head.weight                  (V, H)      the output layer (absent when tied: it is embed.weight)
    head.bias                    (V,)
`__metadata__` (all strings): format "pt", charrnn_format "charrnn-safetensors", charrnn_format_version,
charrnn_version, model_config (JSON: cell, layers, hidden, embedding, input, weight_tying, vocab_size,
dropout settings), vocab (JSON list of the symbols in id order), level ("char" or "byte"), corpus (JSON:
name, chars, sha256), tied ("true"/"false").
"""

from __future__ import annotations

import json
from pathlib import Path

from charrnn.atomic import atomic_write
from charrnn.checkpoint import SAFETENSORS_FORMAT, SAFETENSORS_VERSION, Checkpoint
from charrnn.errors import MissingResource


def metadata(checkpoint: Checkpoint) -> dict[str, str]:
    from charrnn import __version__

    c = checkpoint.corpus
    return {
        "format": "pt",
        "charrnn_format": SAFETENSORS_FORMAT,
        "charrnn_format_version": str(SAFETENSORS_VERSION),
        "charrnn_version": __version__,
        "model_config": json.dumps(checkpoint.model_config.to_dict()),
        "vocab": json.dumps(checkpoint.vocab.to_list(), ensure_ascii=True),
        "level": checkpoint.level,
        "corpus": json.dumps({"name": c.name, "chars": c.chars, "sha256": c.sha256}),
        "tied": "true" if checkpoint.model_config.weight_tying else "false",
    }


def write_safetensors(checkpoint: Checkpoint, out: Path) -> None:
    """Write the checkpoint's weights (float32) and metadata to `out`, atomically."""
    try:
        from safetensors.torch import save
    except ImportError:
        raise MissingResource(
            "exporting safetensors needs the safetensors package: pip install 'charrnn[export]' "
            "(or bash scripts/setup.sh)"
        ) from None
    model = checkpoint.build_model()  # checks the weights; float32 whatever they were stored as
    tensors = {k: v.detach().float().contiguous().clone() for k, v in model.state_dict().items()}
    if checkpoint.model_config.weight_tying:
        del tensors["head.weight"]  # the same matrix as embed.weight (safetensors refuses shared tensors)
    data = save(tensors, metadata=metadata(checkpoint))
    with atomic_write(out) as f:
        f.write(data)
