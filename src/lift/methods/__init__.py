"""Training methods as plugins. A method decides what the image tower is trained against and how the
trained model encodes text afterwards; `lift.train` runs one loop for all of them.

    @METHODS.register("lift", help="one line for --help")
    class Lift(Method):
        Options = LiftOptions          # its own typed options (train flags / the config's `options`)
        ...

A method owns:
- `Options`: a dataclass of its own settings; an option of another method is refused, naming it;
- training: `open` (stores, provenance), `select` (which samples), `model_config`, `text_source` (what a
  DataLoader worker reads per sample), `text_batch` (collated texts -> a device tensor) and
  `text_features` (inside the forward that DDP wraps: [B, D], or [B, V, D] for several views);
- inference, for `lift.load(...)`: `encode_text`, `text_cache_key`, `embed_dim_of`,
  `uses_text_encoder`.
A third method is one new module in this package, registering itself, plus its tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from lift.config import config_from_dict, config_to_dict
from lift.data.views import ViewChoice
from lift.errors import LiftError
from lift.registry import Registry

if TYPE_CHECKING:
    from lift.data.imagetext import TextSource
    from lift.data.index import DataIndex, Sample
    from lift.errors import ErrorPolicy
    from lift.models import ModelConfig
    from lift.train import TrainConfig

# every module of this package registers its method when the registry is first asked
METHODS: Registry[type[Method]] = Registry("method", flag="--method", package=__name__)


class Method:
    """One way to train; instantiated per run with the run's config and its parsed `Options`."""

    name: ClassVar[str]
    Options: ClassVar[type]
    uses_text_encoder: ClassVar[bool] = False  # texts are embedded by a frozen encoder at inference

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.options = parse_options(cfg.method, cfg.options)
        self.choice = ViewChoice.parse(cfg.captions) if cfg.captions else None
        self.provenance: dict[str, Any] = {}

    # ---- training ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Open what the method reads besides the images (a store); fill `self.provenance`."""

    def select(self, index: DataIndex, policy: ErrorPolicy) -> list[Sample]:
        raise NotImplementedError

    def model_config(self) -> ModelConfig:
        raise NotImplementedError

    def text_source(self) -> TextSource:
        raise NotImplementedError

    def prepare_model(self, model: nn.Module) -> None:
        """Fill what the freshly built model takes from the data (e.g. a store's fitted text transform)."""

    def text_batch(self, texts: Any, device: torch.device) -> torch.Tensor:
        return texts.to(device, non_blocking=True)

    def text_features(self, model: nn.Module, texts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_resume(self, saved: dict[str, Any], where: str) -> None:
        """Refuse to continue a checkpoint whose text side this run would read differently."""

    # ---- inference (`lift.load`) -----------------------------------------------------------------

    @classmethod
    def encode_text(cls, loaded: Any, texts: list[str], normalize: bool = True) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def text_cache_key(cls, loaded: Any) -> str | None:
        """What decides `encode_text`'s vectors, hashed: the evaluation text cache keys on it."""
        return weights_key(loaded.model.state_dict(), type(loaded.model).__qualname__)

    @classmethod
    def embed_dim_of(cls, weights: dict[str, torch.Tensor]) -> tuple[str, int] | None:
        """(the weight that fixes the model's embed_dim, its value), to check a config against weights."""
        return None


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)


def _option_owners() -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for name, method in METHODS.items():
        for f in dataclasses.fields(method.Options):
            owners.setdefault(f.name, []).append(name)
    return owners


def parse_options(method: str, options: dict[str, Any] | Any) -> Any:
    """`method`'s Options from a dict; an option of another method is refused naming its method."""
    cls = get_method(method).Options
    if dataclasses.is_dataclass(options):
        return options
    own = {f.name for f in dataclasses.fields(cls)}
    owners = _option_owners()
    for key in options:
        if key not in own and key in owners:
            flag = "--" + key.replace("_", "-")
            raise LiftError(
                f"{flag} is an option of --method {' / '.join(owners[key])}, not of --method {method}"
            )
    return config_from_dict(cls, dict(options), where=f"--method {method} options")


def option_names() -> dict[str, list[str]]:
    """Every method option's name -> the methods that have it (for the CLI)."""
    return _option_owners()


def weights_key(state: dict[str, torch.Tensor], label: str) -> str:
    """A hash of weights: the identity of a text side that was trained."""
    h = hashlib.sha256(label.encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "weights-" + h.hexdigest()[:32]


def identity_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


# ---- configs written before methods were plugins ------------------------------------------------------

# flat TrainConfig keys of earlier versions -> the method that owned them
_OLD_OPTIONS = {"store": "lift", "text_encoder": "lift", "head_depth": "lift", "text_context_length": "clip"}
_OLD_CAPTIONS = {"short": "short", "long": "long", "random": "random:short,long"}


def upgrade_train_config(data: dict[str, Any]) -> dict[str, Any]:
    """A saved TrainConfig of any lift version in today's shape: method options under `options`,
    `caption_field` as `captions` (LIFT ignored it: its store decided; CLIP's kinds map to views)."""
    data = dict(data)
    if "options" in data and "caption_field" not in data:
        return data
    method = data.get("method", "lift")
    options = dict(data.pop("options", None) or {})
    for key, owner in _OLD_OPTIONS.items():
        if key in data:
            value = data.pop(key)
            if owner == method:
                options.setdefault(key, value)
    if "caption_field" in data:
        field = data.pop("caption_field")
        data.setdefault("captions", _OLD_CAPTIONS.get(field, field) if method == "clip" else None)
    data["options"] = options
    return data


def split_options(data: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """A config dict (YAML or flags) with method options given at the top level moved into `options`."""
    data = dict(data)
    owners = _option_owners()
    moved = {k: data.pop(k) for k in list(data) if k in owners and k not in fields}
    if moved:
        data["options"] = {**(data.get("options") or {}), **moved}
    return data


def options_dict(options: Any) -> dict[str, Any]:
    return config_to_dict(options) if dataclasses.is_dataclass(options) else dict(options)
