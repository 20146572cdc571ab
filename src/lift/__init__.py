"""lift: language-image alignment with a fixed text encoder (LIFT, arXiv 2506.04209).

The inference API, apart from the training app:

    import lift
    model = lift.load("runs/lift-demo")          # a run folder or a checkpoint
    img = model.encode_image(model.preprocess(pil_image)[None])
    txt = model.encode_text(["a red circle left of a blue square"])
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(path: Any, **kwargs: Any) -> Any:
    """Load a trained LIFT or CLIP model from a run folder or checkpoint (see `lift.api.load`)."""
    from lift.api import load as _load  # imported lazily: `import lift` must stay cheap for the CLI

    return _load(path, **kwargs)
