"""charrnn: character-level recurrent language models you can train, sample and score.

From Python:
    model = charrnn.load("checkpoints/shakespeare")     # -> charrnn.api.Model
    model.generate("ROMEO:", length=200, seed=1)        # also .stream, .samples, .items, .score
    result = charrnn.train("corpus.txt", max_time="3m")  # -> charrnn.train.TrainResult

The command-line tool (`charrnn`) is a thin layer over the modules of this package: corpus.load_corpus,
settings.resolve_settings, train.Trainer, checkpoint.load_checkpoint, engine.Engine (the one generation
loop), sample / items (what `charrnn sample` writes), evaluate.score_text; the errors in charrnn.errors.
`load` and `train` import PyTorch when first called, so `import charrnn` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from charrnn.errors import BadCheckpoint, BadInput, BadSetting, CharrnnError, MissingResource

if TYPE_CHECKING:
    from charrnn.api import Model
    from charrnn.train import TrainResult

__version__ = "0.1.0"

__all__ = [
    "BadCheckpoint",
    "BadInput",
    "BadSetting",
    "CharrnnError",
    "MissingResource",
    "__version__",
    "load",
    "train",
]


def load(path: Any, device: str = "auto", quantize: str = "none") -> Model:
    """A checkpoint's model, ready to write and score text (see charrnn.api.Model)."""
    from charrnn.api import load as load_model

    return load_model(path, device, quantize)


def train(corpus: Any, **options: Any) -> TrainResult:
    """Train as `charrnn train CORPUS` would, with its option names in Python form (see charrnn.train_api)."""
    from charrnn.train_api import train as run

    return run(corpus, **options)
