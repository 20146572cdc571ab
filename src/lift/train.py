"""The training stage: LIFT (image tower + head vs stored text embeddings) or the CLIP baseline
(both towers on raw captions), with identical vision towers, data order and budget.

One loop for both: each step reads this rank's slice of a global batch, computes image features and
text features (looked up for LIFT, encoded for CLIP), the contrastive loss (local loss + gather with
gradient across ranks), an AdamW step with warm-up + cosine, and clamps the logit scale.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lift import checkpoint as ckpt
from lift import run_dir
from lift.config import bounded, check_bounds, config_to_dict, flag_name, save_config
from lift.data import imagetext
from lift.distributed import DistInfo, barrier, init_process_group
from lift.errors import ON_ERROR_CHOICES, ErrorPolicy, LiftError
from lift.identity import check_same_encoder
from lift.models.base import MIN_TEMPERATURE
from lift.optim import create_optimizer, default_warmup, lr_at, set_lr
from lift.train_log import TrainLog

METHODS = ("lift", "clip")
# Keys that may change between a run and its resume without changing the result (accumulation is
# exact, and world size is free too: the data order does not depend on it).
RESUME_FREE = {
    "out",
    "resume",
    "overwrite",
    "workers",
    "save_every",
    "log_every",
    "on_error",
    "accum_steps",
    "grad_checkpointing",
}


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as RUN/config.json. Numeric fields carry their valid range."""

    method: str = "lift"
    model: str = "vit-tiny"
    train_data: str = ""
    metadata: str | None = None
    store: str | None = None
    text_encoder: str | None = None
    caption_field: str = "short"
    out: str = "runs/lift"
    overwrite: bool = False  # delete an existing run at `out` (one lift made) and start again
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
    head_depth: int = bounded(2, ge=1)
    embed_dim: int | None = bounded(None, ge=1)  # LIFT: the store's dim; CLIP: 512 when None
    text_context_length: int = bounded(77, ge=2)  # CLIP: start and end tokens at least
    grad_checkpointing: bool = False
    seed: int = bounded(0, ge=0)
    workers: int = bounded(0, ge=0)
    save_every: int = bounded(1000, ge=1)
    log_every: int = bounded(10, ge=1)
    on_error: str = "stop"
    resume: str | None = None  # "latest" or a checkpoint folder

    def validate(self) -> None:
        """One-line errors for values out of range or unknown names, before any work starts."""
        from lift.data.imagetext import CAPTION_FIELDS
        from lift.losses import LOSS_REGISTRY
        from lift.models import list_models

        check_bounds(self)
        choices = {"method": METHODS, "model": list_models(), "loss": sorted(LOSS_REGISTRY),
                   "caption_field": CAPTION_FIELDS, "on_error": ON_ERROR_CHOICES}  # fmt: skip
        for name, known in choices.items():
            if getattr(self, name) not in known:
                raise LiftError(
                    f"{flag_name(name)} must be one of {', '.join(known)}, got {getattr(self, name)!r}"
                )
        if not self.train_data:
            raise LiftError(
                "--train-data is required: tar shards (folder, glob, brace pattern) or an image folder"
            )
        if (self.samples is None) == (self.epochs is None):
            raise LiftError(
                "give one budget: --samples N or --epochs E" + (", not both" if self.samples else "")
            )
        if self.batch_size % self.accum_steps:
            raise LiftError(
                f"--batch-size {self.batch_size} must be a multiple of --accum-steps {self.accum_steps}"
            )


class StepForward(nn.Module):
    """What DDP wraps: features for one batch (its forward is what DDP hooks for gradient sync)."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.model.encode_image(images, normalize=True)  # [B, D]
        if self.method == "clip":
            txt = self.model.encode_text(texts, normalize=True)  # tokens [B, L] -> [B, D]
        else:
            txt = F.normalize(texts.float(), dim=-1)  # stored embeddings [B, D]
        return img, txt


def _open_lift_store(cfg: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """The store, checked against the run's text encoder; returns (store, provenance)."""
    from lift.store import open_store

    if not cfg.store:
        raise LiftError("--method lift needs --store STORE (made by `lift store build` / `lift embed`)")
    store = open_store(cfg.store)
    extra = (store.manifest or {}).get("extra", {}) or {}
    encoder_path = extra.get("text_encoder_path")
    if cfg.text_encoder:
        from lift.identity import check_same_encoder
        from lift.text import encoder_identity
        from lift.text.default import resolve_encoder_path

        encoder_path = str(resolve_encoder_path(cfg.text_encoder))
        check_same_encoder(
            encoder_identity(encoder_path, like=store.identity), store.identity,
            expected_from=f"--text-encoder {cfg.text_encoder}", found_from=f"store {cfg.store}",
        )  # fmt: skip
    if cfg.embed_dim is not None and cfg.embed_dim != store.dim:
        raise LiftError(
            f"store {cfg.store} has dim {store.dim} but --embed-dim (the head's dim) is {cfg.embed_dim}"
        )
    prov = {"text_identity": store.identity, "text_encoder_path": encoder_path, "store_dim": store.dim}
    return store, prov


def _model_config(cfg: TrainConfig, dim: int | None) -> Any:
    from lift.models import ModelConfig

    return ModelConfig(
        method=cfg.method, model=cfg.model, embed_dim=dim or cfg.embed_dim or 512, head_depth=cfg.head_depth,
        loss=cfg.loss, init_temperature=cfg.init_temperature, text_context_length=cfg.text_context_length,
        grad_checkpointing=cfg.grad_checkpointing,
    )  # fmt: skip


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, where: Path) -> None:
    now = config_to_dict(cfg)
    diff = [
        f"{k}: {saved.get(k)!r} != {now.get(k)!r}"
        for k in sorted(set(saved) | set(now))
        if k not in RESUME_FREE and saved.get(k) != now.get(k)
    ]
    if diff:
        raise LiftError(f"cannot resume from {where}: the config differs ({'; '.join(diff)})")


def _equalize(batch: dict[str, Any], info: DistInfo, device: torch.device) -> dict[str, Any]:
    """Under --on-error skip ranks may hold different counts; trim to the smallest (gathers need equal sizes)."""
    n = torch.tensor([len(batch["keys"])], device=device)
    torch.distributed.all_reduce(n, op=torch.distributed.ReduceOp.MIN)
    k = int(n.item())
    if k == len(batch["keys"]):
        return batch
    return {name: (v[:k] if name != "errors" else v) for name, v in batch.items()}


def forward_backward(
    net: nn.Module, model: nn.Module, loss_fn: Any, images: torch.Tensor, texts: torch.Tensor, *, micro: int,
    autocast: Any,
) -> torch.Tensor:  # fmt: skip
    """Loss of the whole batch and its gradients, computed `micro` samples at a time.

    Gradient accumulation that keeps every negative (open_clip's accum_freq scheme): features of
    all micro-batches are first computed without gradient; then each micro-batch is recomputed
    with gradient and the full-batch loss is back-propagated through it alone. The sum over
    micro-batches is the full-batch gradient, at the cost of one extra forward pass.
    """
    chunks = list(zip(images.split(micro), texts.split(micro)))
    if len(chunks) == 1:
        with autocast:
            img_f, txt_f = net(*chunks[0])
            loss = loss_fn(img_f.float(), txt_f.float(), model.logit_scale, model.logit_bias)  # log scale
        loss.backward()
        return loss.detach()
    plain = net.module if hasattr(net, "module") else net  # DDP: the cache pass needs no gradient hooks
    with torch.no_grad(), autocast:
        cached = [tuple(f.float() for f in plain(img, txt)) for img, txt in chunks]  # n x ([m, D], [m, D])
    for i, (img, txt) in enumerate(chunks):
        last = i == len(chunks) - 1
        # DDP syncs gradients only on the last micro-batch; the scale/bias get their gradient once, there
        with contextlib.nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync(), autocast:
            img_f, txt_f = net(img, txt)
            feats = [(img_f.float(), txt_f.float()) if j == i else c for j, c in enumerate(cached)]
            scale, bias = model.logit_scale, model.logit_bias
            if not last:
                scale, bias = scale.detach(), (bias.detach() if bias is not None else None)
            loss = loss_fn(torch.cat([f[0] for f in feats]), torch.cat([f[1] for f in feats]), scale, bias)
        loss.backward()
    return loss.detach()


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training as configured; returns a summary dict."""
    from lift.losses import create_loss
    from lift.models import create_model, get_tokenizer

    cfg.validate()
    run = Path(cfg.out)
    replace = run_dir.check_run_dir(run, resume=cfg.resume, overwrite=cfg.overwrite,
                                    sources=[s for s in (cfg.train_data, cfg.store, cfg.metadata) if s])  # fmt: skip
    resume_from = run_dir.resume_point(run, cfg.resume) if not replace else None
    info = init_process_group()
    device = torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    policy = ErrorPolicy(cfg.on_error)

    index = imagetext.index_data(cfg.train_data, cfg.metadata)
    store, prov = None, {"text_identity": None, "text_encoder_path": None, "store_dim": None}
    if cfg.method == "lift":
        store, prov = _open_lift_store(cfg)
    # one rule for both methods: each bad sample through the policy once, before training
    samples = imagetext.select_samples(index, store=store, caption_field=cfg.caption_field, policy=policy)
    total_steps = imagetext.total_steps_for(
        len(samples), cfg.batch_size, samples=cfg.samples, epochs=cfg.epochs
    )
    warmup = cfg.warmup if cfg.warmup is not None else default_warmup(total_steps)

    torch.manual_seed(cfg.seed)
    model_cfg = _model_config(cfg, prov["store_dim"])
    model = create_model(model_cfg).to(device)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    tokenizer = get_tokenizer(model_cfg) if cfg.method == "clip" else None
    optimizer = create_optimizer(
        model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps
    )
    meta = {"train": config_to_dict(cfg), "model": config_to_dict(model_cfg), **prov}

    start = 0
    if resume_from:  # `--resume latest` with no checkpoint yet starts fresh: the same command reruns a job
        saved = ckpt.load_config(resume_from)
        _check_resumable(saved["train"], cfg, resume_from)
        if cfg.method == "lift":  # the same store path may hold other vectors now
            check_same_encoder(saved.get("text_identity") or {}, prov["text_identity"],
                               expected_from=f"checkpoint {resume_from}", found_from=f"store {cfg.store}")  # fmt: skip
        model.load_state_dict(ckpt.load_weights(resume_from))
        state = ckpt.load_state(resume_from)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        start, policy.skipped = int(state["step"]), int(state["skipped"])
    if info.is_main:
        run_dir.open_run_dir(run, replace=replace)
        save_config(cfg, run / "config.json")
        run_dir.truncate_metrics(run, start)
    barrier()

    net = StepForward(model, cfg.method)
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    loss_fn = create_loss(cfg.loss, world_size=info.world_size, rank=info.rank)
    dataset = imagetext.ImageTextDataset(
        samples, imagetext.train_transform(model.image_size, model.image_mean, model.image_std),
        store=store, caption_field=cfg.caption_field, seed=cfg.seed,
    )  # fmt: skip
    sampler = imagetext.GlobalBatchSampler(
        len(samples), cfg.batch_size, seed=cfg.seed, total_steps=total_steps, start_step=start,
        rank=info.rank, world_size=info.world_size,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=imagetext.collate,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )  # fmt: skip

    def save(step: int) -> None:
        if info.is_main:
            state = {"optimizer": optimizer.state_dict(), "step": step, "skipped": policy.skipped,
                     "rng_cpu": torch.get_rng_state()}  # fmt: skip
            ckpt.save_checkpoint(run, step, model.state_dict(), meta, state)
        barrier()

    log = TrainLog(run, total=total_steps, start=start, method=cfg.method, is_main=info.is_main)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    micro = cfg.batch_size // info.world_size // cfg.accum_steps
    skipped_at_epoch, epoch_skips = policy.skipped, {}
    model.train()
    try:
        for step, batch in enumerate(loader, start=start):
            for message in batch["errors"]:
                policy.fail(message)
            if info.enabled:
                batch = _equalize(batch, info, device)
            keys = batch["keys"]
            if not keys:
                raise LiftError(
                    f"step {step}: every sample of the batch was bad (last: {batch['errors'][-1]})"
                )
            lr = lr_at(step, base_lr=cfg.lr, warmup=warmup, total_steps=total_steps)
            set_lr(optimizer, lr)
            images = batch["images"].to(device, non_blocking=True)
            texts = tokenizer(batch["captions"]) if tokenizer else batch["embeddings"]
            texts = texts.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            total_loss = forward_backward(net, model, loss_fn, images, texts, micro=micro, autocast=autocast)
            if info.enabled:
                torch.distributed.all_reduce(total_loss)
                total_loss /= info.world_size
            loss_value = float(total_loss)
            if not torch.isfinite(total_loss):
                shown = ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "")
                raise LiftError(f"non-finite loss ({loss_value}) at step {step}; batch keys: {shown}")
            optimizer.step()
            with torch.no_grad():
                model.clamp_logit_scale()
            done = step + 1
            log.step(len(keys) * info.world_size)
            epoch = step // sampler.steps_per_epoch
            end_of_epoch = done % sampler.steps_per_epoch == 0 or done == total_steps
            if end_of_epoch and policy.skipped > skipped_at_epoch:  # counts are this rank's
                epoch_skips[epoch] = policy.skipped - skipped_at_epoch
                log.note(
                    f"epoch {epoch}: skipped {epoch_skips[epoch]} bad samples (last: {policy.examples[-1]})"
                )
                skipped_at_epoch = policy.skipped
            if done % cfg.log_every == 0 or done == total_steps:
                scale = float(model.logit_scale.detach().exp())
                log.row(done, loss=loss_value, lr=lr, logit_scale=scale, samples=done * cfg.batch_size)
            if done % cfg.save_every == 0 and done != total_steps:
                save(done)
        if start < total_steps:
            save(total_steps)
    finally:
        log.close()
    return {
        "method": cfg.method, "steps": total_steps, "samples": total_steps * cfg.batch_size,
        "skipped": policy.skipped, "skipped_per_epoch": epoch_skips,
        "unused": sum(index.unused.values()), "unused_note": index.unused_note(),
        "checkpoint": str(run / "checkpoints" / ckpt.checkpoint_name(total_steps)),
    }  # fmt: skip
