"""The character model: input vectors -> stacked recurrent layers -> linear -> logits.

Shapes: N batch rows, T time steps, V vocabulary size, D input size (E embedding, or V for one-hot),
H hidden size, L layers.
    input ids  (N, T) integer
    logits     (N, T, V)
    state      LSTM-like: (h, c), each (L, N, H); GRU and RNN: h, (L, N, H)

Each layer is a single-layer module from cells.py: PyTorch's fused nn.LSTM/nn.GRU/nn.RNN (cuDNN on GPUs,
oneDNN on CPUs) or the stepped peephole LSTM. Running the layers one by one (measured as fast as one
multi-layer call on CPUs) lets locked and weight dropout reach between and inside them. Dropout sits on the
input of every layer and before the output layer; which kind is set by `dropout_mode` (see dropout.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from charrnn.cells import CELLS, has_cell_state, layer_step, make_layer
from charrnn.dropout import DROPOUT_MODES, WindowMasks, apply_mask, drop_characters, keep_mask
from charrnn.errors import BadSetting, setting_ref

INPUTS = ("embedding", "onehot")

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 512
    embedding: int = 64
    dropout: float = 0.2
    input: str = "embedding"  # or "onehot": the V-sized indicator vector, as in the original char-rnn
    dropout_mode: str = "standard"
    recurrent_dropout: float | None = None  # weight dropout on W_hh (variational mode); None: `dropout`
    embedding_dropout: float = 0.0
    weight_tying: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @property
    def input_size(self) -> int:
        return self.vocab_size if self.input == "onehot" else self.embedding

    @property
    def weight_dropout(self) -> float:
        if self.dropout_mode != "variational":
            return 0.0
        return self.dropout if self.recurrent_dropout is None else self.recurrent_dropout

    def check(self) -> None:
        """Refuse combinations that cannot be built, naming the settings."""
        ref = setting_ref
        if self.cell not in CELLS:
            raise BadSetting(f"{ref('cell')} {self.cell!r}: choose one of {', '.join(CELLS)}", setting="cell")
        if self.input not in INPUTS:
            raise BadSetting(
                f"{ref('input')} {self.input!r}: choose one of {', '.join(INPUTS)}", setting="input"
            )
        if self.dropout_mode not in DROPOUT_MODES:
            raise BadSetting(
                f"{ref('dropout_mode')} {self.dropout_mode!r}: choose one of {', '.join(DROPOUT_MODES)}",
                setting="dropout_mode",
            )
        if self.weight_tying and self.input != "embedding":
            raise BadSetting(
                f"{ref('weight_tying')} shares the embedding matrix; it needs {ref('input')} embedding",
                setting="weight_tying",
            )
        if self.weight_tying and self.embedding != self.hidden:
            raise BadSetting(
                f"{ref('weight_tying')} needs {ref('embedding')} equal to {ref('hidden')} (the output layer "
                f"reads {self.hidden} hidden units, the embedding has {self.embedding}); set "
                f"{ref('embedding')} {self.hidden}",
                setting="embedding",
            )


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.check()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embedding) if c.input == "embedding" else None
        self.rnns = nn.ModuleList(
            make_layer(c.cell, c.input_size if k == 0 else c.hidden, c.hidden) for k in range(c.layers)
        )
        self.head = nn.Linear(c.hidden, c.vocab_size)
        if c.weight_tying:
            self.head.weight = self.embed.weight  # one tensor: (V, E) with E == H

    # ---- pieces, also used step by step (scheduled sampling) and by the diagnostics ---------------------
    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        c = self.config
        zeros = torch.zeros(c.layers, batch_size, c.hidden, device=device)
        return (zeros, zeros.clone()) if has_cell_state(c.cell) else zeros

    def draw_masks(self, batch_size: int, device: torch.device | str) -> WindowMasks:
        """This window's dropout decisions (all None in eval mode or in standard mode)."""
        c, masks = self.config, WindowMasks()
        if not self.training:
            return masks
        if c.embedding_dropout > 0:
            masks.chars = keep_mask((c.vocab_size,), c.embedding_dropout, device)
        locked = c.dropout_mode in ("locked", "variational") and c.dropout > 0
        for k in range(c.layers):
            size, rate = (c.input_size if k == 0 else c.hidden), self.input_dropout(k)
            masks.layer_inputs.append(
                keep_mask((batch_size, 1, size), rate, device) if locked and rate else None
            )
            w = self.rnns[k].weight_hh_l0
            p = c.weight_dropout
            masks.w_hh.append(w * keep_mask(w.shape, p, w.device, w.dtype) if p > 0 else None)
        masks.output = keep_mask((batch_size, 1, c.hidden), c.dropout, device) if locked else None
        return masks

    def input_dropout(self, k: int) -> float:
        """Dropout rate on layer k's input. Not on one-hot vectors: dropping their one non-zero entry would
        erase the character (--embedding-dropout does that on purpose), so there only between layers."""
        return 0.0 if k == 0 and self.config.input == "onehot" else self.config.dropout

    def inputs(self, ids: torch.Tensor, masks: WindowMasks) -> torch.Tensor:
        """(N, T) ids -> (N, T, D) input vectors, embedding dropout applied."""
        if self.embed is not None:
            x = self.embed(ids.long())
        else:
            x = nn.functional.one_hot(ids.long(), self.config.vocab_size).float()
        return drop_characters(x, ids, masks.chars)

    def recurrent(
        self, x: torch.Tensor, state: State | None, masks: WindowMasks
    ) -> tuple[torch.Tensor, State]:
        """Run the layer stack over (N, T, D) inputs; returns the (N, T, H) output, dropout applied."""
        c = self.config
        new_h, new_c = [], []
        for k, layer in enumerate(self.rnns):
            x = apply_mask(x, masks.layer_input(k), self.input_dropout(k), self.training)
            layer_state = _layer_state(state, k)
            w_hh = masks.recurrent_weight(k)
            if w_hh is None:
                x, out_state = layer(x, layer_state)
            else:
                with warnings.catch_warnings():  # cuDNN warns that replaced weights are not one flat block
                    warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
                    x, out_state = torch.func.functional_call(layer, {"weight_hh_l0": w_hh}, (x, layer_state))
            if isinstance(out_state, tuple):
                new_h.append(out_state[0])
                new_c.append(out_state[1])
            else:
                new_h.append(out_state)
        x = apply_mask(x, masks.output, c.dropout, self.training)
        h = torch.cat(new_h, dim=0)
        return x, ((h, torch.cat(new_c, dim=0)) if new_c else h)

    def forward(
        self, ids: torch.Tensor, state: State | None = None, masks: WindowMasks | None = None
    ) -> tuple[torch.Tensor, State]:
        if masks is None:
            masks = self.draw_masks(ids.size(0), ids.device)
        out, state = self.recurrent(self.inputs(ids, masks), state, masks)
        return self.head(out), state

    def step(self, ids: torch.Tensor, state: State, masks: WindowMasks) -> tuple[torch.Tensor, State]:
        """One differentiable time step for all rows: (N,) ids -> (N, V) logits, through the cell functions
        rather than a fused call (a fused call per character costs milliseconds of kernel set-up on CPUs)."""
        c = self.config
        x = self.inputs(ids.unsqueeze(1), masks)[:, 0]
        new_h, new_c = [], []
        for k, layer in enumerate(self.rnns):
            mask = masks.layer_input(k)
            x = apply_mask(x, None if mask is None else mask[:, 0], self.input_dropout(k), self.training)
            layer_state = (state[0][k], state[1][k]) if isinstance(state, tuple) else state[k]
            out = layer_step(c.cell, layer, x, layer_state, masks.recurrent_weight(k))
            if isinstance(out, tuple):
                x = out[0]
                new_h.append(out[0])
                new_c.append(out[1])
            else:
                x = out
                new_h.append(out)
        mask = masks.output[:, 0] if masks.output is not None else None
        x = apply_mask(x, mask, c.dropout, self.training)
        h = torch.stack(new_h)
        return self.head(x), ((h, torch.stack(new_c)) if new_c else h)


def map_state(state: State, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
    """`fn` applied to h, or to both h and c: a state is one tensor or an (h, c) pair."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def _layer_state(state: State | None, k: int):
    if state is None:
        return None
    return map_state(state, lambda s: s[k : k + 1].contiguous())


def detach_state(state: State) -> State:
    """Cut the graph at the window edge: the values carry on, the gradients stop."""
    return map_state(state, torch.Tensor.detach)


def select_rows(state: State, rows: torch.Tensor | slice) -> State:
    return map_state(state, lambda s: s[:, rows])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
