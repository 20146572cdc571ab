"""`TrainConfig`: the fields every training method shares, plus `options`, the chosen method's own
(`lift.methods`). Saved as RUN/config.json; numeric fields carry their valid range.

In YAML, a method's options may be given under `options:` or at the top level:

    method: lift
    train_data: shards/
    store: stores/recap        # the same as options: {store: stores/recap}
    captions: random           # every view of the store, one drawn per sample and epoch
    epochs: 6
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lift.config import bounded, check_bounds, config_from_dict, flag_name, load_config
from lift.errors import ON_ERROR_CHOICES, LiftError
from lift.models.base import MIN_TEMPERATURE

# Keys that may change between a run and its resume without changing the result (accumulation is
# exact, and world size is free too: the data order does not depend on it).
RESUME_FREE = {"out", "resume", "overwrite", "workers", "save_every", "log_every", "on_error", "accum_steps",
               "grad_checkpointing", "compile", "eval_suite", "eval_every"}  # fmt: skip


@dataclass
class TrainConfig:
    method: str = "lift"
    model: str = "vit-tiny"
    train_data: str = ""
    metadata: str | None = None
    data_order: str | None = None  # exact | stream; None: stream for URLs, else exact (lift.train_data)
    shuffle_buffer: int = bounded(1000, ge=1)  # stream order: samples shuffled per worker
    image_decode: str = "pillow"  # lift.data.decode.DECODERS: pillow (CPU workers) or nvjpeg (GPU)
    captions: str | None = (
        None  # VIEW | random | all [:VIEW,...] (lift.data.views); None: the method's default
    )
    out: str = "runs/lift"
    overwrite: bool = False  # delete an existing run at `out` (one lift made) and start again
    init_from: str | None = None  # start the vision tower (and a fitting head) from another run
    batch_size: int = bounded(256, ge=1)  # global, over all ranks and accumulation steps
    samples: int | None = bounded(None, ge=1)
    epochs: float | None = bounded(None, gt=0)
    lr: float = bounded(1e-3, gt=0)
    weight_decay: float = bounded(0.2, ge=0)
    beta1: float = bounded(0.9, ge=0, lt=1)
    beta2: float = bounded(0.98, ge=0, lt=1)
    eps: float = bounded(1e-6, gt=0)
    warmup: int | None = bounded(None, ge=0)  # None: min(500, total_steps // 10)
    accum_steps: int = bounded(1, ge=1)
    loss: str = "infonce"
    init_temperature: float | None = bounded(None, ge=MIN_TEMPERATURE, le=1)  # None: the loss's default
    embed_dim: int | None = bounded(None, ge=1)  # the joint space: LIFT, the store's dim; CLIP, 512 when None
    grad_checkpointing: bool = False
    compile: bool = False  # torch.compile the training step (the towers; same loss within float tolerance)
    seed: int = bounded(0, ge=0)
    workers: int = bounded(0, ge=0)
    save_every: int = bounded(1000, ge=1)
    log_every: int = bounded(10, ge=1)
    eval_suite: str | None = (
        None  # a `lift eval suite` YAML run on rank 0 every `eval_every` steps and at the end
    )
    eval_every: int | None = bounded(None, ge=1)
    on_error: str = "stop"
    resume: str | None = None  # "latest" or a checkpoint folder
    options: dict[str, Any] = field(default_factory=dict)  # the method's own (lift.methods)

    def validate(self) -> None:
        """One-line errors for values out of range, unknown names and options of another method,
        before any work starts."""
        from lift.data.decode import DECODERS
        from lift.data.views import ViewChoice
        from lift.losses import LOSSES
        from lift.methods import METHODS, options_dict, parse_options
        from lift.models import list_models
        from lift.train_data import ORDERS

        check_bounds(self)
        choices = {"method": METHODS.names(), "model": list_models(), "loss": LOSSES.names(),
                   "on_error": ON_ERROR_CHOICES, "image_decode": DECODERS.names()}  # fmt: skip
        if self.data_order is not None and self.data_order not in ORDERS:
            raise LiftError(f"--data-order must be one of {', '.join(ORDERS)}, got {self.data_order!r}")
        for name, known in choices.items():
            if getattr(self, name) not in known:
                raise LiftError(
                    f"{flag_name(name)} must be one of {', '.join(known)}, got {getattr(self, name)!r}"
                )
        parsed = parse_options(self.method, self.options)
        check_bounds(parsed)
        self.options = options_dict(parsed)  # defaults filled in: what config.json records
        if self.captions is not None:
            ViewChoice.parse(self.captions)
        if not self.train_data:
            raise LiftError(
                "--train-data is required: tar shards (folder, glob, brace pattern) or an image folder"
            )
        if (self.samples is None) == (self.epochs is None):
            raise LiftError(
                "give one budget: --samples N or --epochs E" + (", not both" if self.samples else "")
            )
        if self.eval_every is not None and not self.eval_suite:
            raise LiftError("--eval-every needs --eval-suite SUITE.yaml (what to evaluate)")
        if self.batch_size % self.accum_steps:
            raise LiftError(
                f"--batch-size {self.batch_size} must be a multiple of --accum-steps {self.accum_steps}"
            )


def train_config_from_dict(data: dict[str, Any], *, where: str = "config") -> TrainConfig:
    """A TrainConfig from a dict of any lift version: today's, with method options at the top level,
    or the flat layout of checkpoints written before methods were plugins."""
    from lift.methods import options_dict, parse_options, split_options, upgrade_train_config

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = config_from_dict(TrainConfig, split_options(upgrade_train_config(data), fields), where=where)
    cfg.options = options_dict(parse_options(cfg.method, cfg.options))  # defaults filled in, as saved today
    return cfg


def load_train_config(path: str | Path | None, given: dict[str, Any]) -> TrainConfig:
    """Defaults, then the YAML/JSON file, then the flags the user gave (which always win)."""
    base = dataclasses.asdict(load_config(TrainConfig, None))
    if path is not None:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise LiftError(f"{path}: cannot read config: {e}") from None
        if not isinstance(data, dict):
            raise LiftError(f"{path}: expected a mapping of TrainConfig keys")
        from lift.methods import split_options

        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        data = split_options(data, fields)
        base = {**base, **data, "options": {**base["options"], **(data.get("options") or {})}}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    flags = {k: v for k, v in given.items() if k in fields}
    options = {k: v for k, v in given.items() if k not in fields}
    merged = {**base, **flags, "options": {**base["options"], **options}}
    return config_from_dict(TrainConfig, merged, where=str(path) if path else "flags")
