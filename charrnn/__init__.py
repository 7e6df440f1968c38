"""charrnn: character-level recurrent language models you can train, sample and score.

The command-line tool (`charrnn`) is a thin layer over this API:

    from charrnn import load_corpus, train, TrainConfig, ModelConfig, load_checkpoint, generate, evaluate_text
"""

from charrnn.errors import CharrnnError

__version__ = "0.1.0"

__all__ = ["CharrnnError", "__version__"]
