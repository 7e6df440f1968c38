"""charrnn: character-level recurrent language models you can train, sample and score.

The command-line tool (`charrnn`) is a thin layer over the modules of this package:
    charrnn.corpus.load_corpus, charrnn.model.ModelConfig, charrnn.config.TrainConfig,
    charrnn.train.Trainer, charrnn.checkpoint.load_checkpoint / model_from_checkpoint,
    charrnn.sample.generate, charrnn.evaluate.score_text
"""

from charrnn.errors import CharrnnError

__version__ = "0.1.0"

__all__ = ["CharrnnError", "__version__"]
