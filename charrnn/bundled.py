"""Models that ship inside the package, usable by name wherever a checkpoint is asked for.

`charrnn sample base`, `charrnn info base` and `charrnn train my.txt --init base` find the file here; a file
or folder of the same name in the working directory wins, as paths win over named corpora. The weights are
stored in bfloat16 (half the size; loading widens them to float32). How `base` was built:
scripts/build_base_model.sh and the README's "Fine-tuning" section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class BundledModel:
    name: str
    filename: str
    description: str


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in [
        BundledModel(
            name="base",
            filename="base.pt",
            description="byte-level 2x512 LSTM trained on English prose, licences and Python (docs and "
            "source) from a Debian machine: a starting point to fine-tune on any text (--init base)",
        ),
    ]
}


def bundled_path(name: str) -> Path | None:
    """The file of the bundled model called `name`, or None when there is no such model."""
    model = BUNDLED.get(name)
    return MODELS_DIR / model.filename if model is not None else None


def bundled_name(path: Path) -> str | None:
    """The name of the bundled model stored at `path`, if it is one."""
    try:
        resolved = path.resolve()
    except OSError:
        return None
    for model in BUNDLED.values():
        if (MODELS_DIR / model.filename).resolve() == resolved:
            return model.name
    return None
