"""charrnn: character-level recurrent language models you can train, sample and score.

The command-line tool (`charrnn`) is a thin layer over the modules of this package:
    charrnn.corpus.load_corpus, charrnn.settings.resolve_settings (-> ModelConfig, TrainConfig),
    charrnn.train.Trainer, charrnn.checkpoint.load_checkpoint (-> Checkpoint) / model_from_checkpoint,
    charrnn.sample.generate / sample_text, charrnn.evaluate.score_text; the errors in charrnn.errors
"""

from charrnn.errors import BadCheckpoint, BadInput, BadSetting, CharrnnError, MissingResource

__version__ = "0.1.0"

__all__ = ["BadCheckpoint", "BadInput", "BadSetting", "CharrnnError", "MissingResource", "__version__"]
