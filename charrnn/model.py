"""The character model: embedding -> multi-layer fused RNN (LSTM/GRU/tanh RNN) -> linear -> logits.

Shapes: N batch rows, T time steps, V vocabulary size, E embedding size, H hidden size, L layers.
    input ids  (N, T) integer
    logits     (N, T, V)
    state      LSTM: (h, c), each (L, N, H); GRU and RNN: h, (L, N, H)
The recurrent part is PyTorch's fused nn.LSTM/nn.GRU/nn.RNN (cuDNN on GPUs, oneDNN on CPUs); dropout is
applied to the embedding output, between layers (by the fused module) and before the output layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

CELLS = ("lstm", "gru", "rnn")

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 512
    embedding: int = 64
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, not {config.cell!r}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embedding)
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.cell]
        self.rnn = rnn_class(
            config.embedding,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        c = self.config
        zeros = torch.zeros(c.layers, batch_size, c.hidden, device=device)
        return (zeros, zeros.clone()) if c.cell == "lstm" else zeros

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        x = self.drop(self.embed(ids.long()))
        out, state = self.rnn(x, state)
        return self.head(self.drop(out)), state


def detach_state(state: State) -> State:
    """Cut the graph at the window edge: the values carry on, the gradients stop."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def select_rows(state: State, rows: torch.Tensor | slice) -> State:
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
