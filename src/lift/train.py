"""The training stage: one loop for every method (`lift.methods`): LIFT (image tower + head vs stored
text vectors of a frozen encoder), the CLIP baseline (both towers on raw captions) and what follows
them, with identical vision towers, data order and budget.

Each step reads this rank's slice of a global batch, computes image features and the method's text
features (looked up for LIFT, encoded for CLIP; one per view), the contrastive loss (local loss +
gather with gradient across ranks), an AdamW step with warm-up + cosine, and clamps the logit scale.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lift import checkpoint as ckpt
from lift import run_dir
from lift.config import config_to_dict, save_config
from lift.data.decode import images_to_device, loader_settings, make_decoder, normalize_on_device
from lift.distributed import barrier, init_process_group
from lift.errors import ErrorPolicy, LiftError
from lift.methods import Method, get_method
from lift.optim import create_optimizer, default_warmup, lr_at, set_lr
from lift.train_config import RESUME_FREE, TrainConfig, train_config_from_dict
from lift.train_data import data_order, open_data
from lift.train_log import TrainLog

__all__ = ["TrainConfig", "train"]


class StepForward(nn.Module):
    """What DDP wraps: features for one batch (its forward is what DDP hooks for gradient sync)."""

    def __init__(self, model: nn.Module, method: Method) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.model.encode_image(images, normalize=True)  # [B, D]
        return img, self.method.text_features(self.model, texts)  # [B, D] or [B, V, D]


def _flat(cfg: dict[str, Any]) -> dict[str, Any]:
    """A TrainConfig dict with `options.x` keys, so a difference names the option."""
    options = cfg.get("options") or {}
    return {
        **{k: v for k, v in cfg.items() if k != "options"},
        **{f"options.{k}": v for k, v in options.items()},
    }


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, where: Path) -> None:
    before = _flat(config_to_dict(train_config_from_dict(saved, where=f"{where} train config")))
    now = _flat(config_to_dict(cfg))
    diff = [
        f"{k}: {before.get(k)!r} != {now.get(k)!r}"
        for k in sorted(set(before) | set(now))
        if k not in RESUME_FREE and before.get(k) != now.get(k)
    ]
    if diff:
        raise LiftError(f"cannot resume from {where}: the config differs ({'; '.join(diff)})")


def _to_device(
    batch: dict[str, Any], model: nn.Module, method: Method, policy: ErrorPolicy, device: torch.device
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(keys, float images [B, 3, S, S], the method's text tensor) on the device: the uint8 images are
    copied (or GPU-decoded; what fails there goes through `policy`) and normalised there."""
    if not batch["keys"]:
        return [], torch.empty(0), torch.empty(0)
    on_device = images_to_device(batch["images"], device=device, image_size=model.image_size)
    for message in on_device.errors:
        policy.fail(message)
    keys, texts = batch["keys"], batch["texts"]
    if len(on_device.kept) != len(keys):
        keys = [keys[i] for i in on_device.kept]
        texts = (
            texts[on_device.kept] if isinstance(texts, torch.Tensor) else [texts[i] for i in on_device.kept]
        )
    if not keys:
        return [], torch.empty(0), torch.empty(0)
    images = normalize_on_device(on_device.images, mean=model.image_mean, std=model.image_std)
    return keys, images, method.text_batch(texts, device)


def _equalize(
    keys: list[str], images: torch.Tensor, texts: torch.Tensor, device: torch.device
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Under --on-error skip ranks may hold different counts; trim to the smallest (gathers need equal sizes)."""
    n = torch.tensor([len(keys)], device=device)
    torch.distributed.all_reduce(n, op=torch.distributed.ReduceOp.MIN)
    k = int(n.item())
    return (keys, images, texts) if k == len(keys) else (keys[:k], images[:k], texts[:k])


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
    from lift.models import create_model

    cfg.validate()
    if cfg.eval_suite:  # every entry checked before any work
        from lift.evaluate.suite import load_suite

        suite = load_suite(cfg.eval_suite)
    method = get_method(cfg.method)(cfg)
    run = Path(cfg.out)
    sources = [s for s in (cfg.train_data, cfg.metadata, cfg.options.get("store")) if s]
    replace = run_dir.check_run_dir(run, resume=cfg.resume, overwrite=cfg.overwrite, sources=sources)
    resume_from = run_dir.resume_point(run, cfg.resume) if not replace else None
    info = init_process_group()
    device = torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    policy = ErrorPolicy(cfg.on_error)

    data = open_data(cfg, method, policy)
    total_steps = data.total_steps
    warmup = cfg.warmup if cfg.warmup is not None else default_warmup(total_steps)

    torch.manual_seed(cfg.seed)
    model_cfg = method.model_config()
    model = create_model(model_cfg)
    method.prepare_model(model)
    model = model.to(device)
    meta = {"train": config_to_dict(cfg), "model": config_to_dict(model_cfg), **method.provenance}
    if cfg.init_from and not resume_from:
        from lift.warm_start import warm_start

        meta["init_from"] = warm_start(model, model_cfg, cfg.init_from)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    optimizer = create_optimizer(
        model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps
    )

    start = 0
    if resume_from:  # `--resume latest` with no checkpoint yet starts fresh: the same command reruns a job
        saved = ckpt.load_config(resume_from)
        _check_resumable(saved["train"], cfg, resume_from)
        method.check_resume(saved, str(resume_from))
        if "init_from" in saved:
            meta["init_from"] = saved["init_from"]
        model.load_state_dict(ckpt.load_weights(resume_from))
        state = ckpt.load_state(resume_from)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        start, policy.skipped = int(state["step"]), int(state["skipped"])
        if data.stateful:
            data.load_state(state["stream"])
    if info.is_main:
        run_dir.open_run_dir(run, replace=replace)
        save_config(cfg, run / "config.json")
        run_dir.truncate_metrics(run, start)
    barrier()

    net = StepForward(model, method)
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:  # after DDP, as torch recommends; the model's state_dict keys stay as they are
        net = torch.compile(net)
    loss_fn = create_loss(cfg.loss, world_size=info.world_size, rank=info.rank)
    images = make_decoder(cfg.image_decode, image_size=model.image_size, device=device)
    batches = data.batches(start=start, images=images, info=info,
                           settings=loader_settings(workers=cfg.workers, device=device))  # fmt: skip

    def save(step: int) -> None:
        positions = data.state() if data.stateful else None  # collective: every rank takes part
        if info.is_main:
            state = {"optimizer": optimizer.state_dict(), "step": step, "skipped": policy.skipped,
                     "rng_cpu": torch.get_rng_state()}  # fmt: skip
            if positions is not None:
                state["stream"] = positions
            ckpt.save_checkpoint(run, step, model.state_dict(), meta, state)
        barrier()

    evaluate = None
    if cfg.eval_suite:
        from lift.train_eval import TrainEval

        evaluate = TrainEval(suite, cfg.eval_every, run=run, meta=meta, info=info, device=device)
    log = TrainLog(run, total=total_steps, start=start, method=cfg.method, is_main=info.is_main)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    micro = cfg.batch_size // info.world_size // cfg.accum_steps
    skipped_at_epoch, epoch_skips = policy.skipped, {}
    model.train()
    try:
        for step in range(start, total_steps):
            waited = time.perf_counter()
            batch = next(batches)
            waited = time.perf_counter() - waited  # the step stood still for its data this long
            data.consumed(batch)
            for message in batch["errors"]:
                policy.fail(message)
            keys, images, texts = _to_device(batch, model, method, policy, device)
            if info.enabled:
                keys, images, texts = _equalize(keys, images, texts, device)
            if not keys:
                raise LiftError(
                    f"step {step}: every sample of the batch was bad (last: {(batch['errors'] or ['?'])[-1]})"
                )
            lr = lr_at(step, base_lr=cfg.lr, warmup=warmup, total_steps=total_steps)
            set_lr(optimizer, lr)
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
            log.step(len(keys) * info.world_size, waited=waited)
            epoch = data.epoch_of(step, batch)
            end_of_epoch = data.ends_epoch(done) or done == total_steps
            if end_of_epoch and policy.skipped > skipped_at_epoch:  # counts are this rank's
                epoch_skips[epoch] = policy.skipped - skipped_at_epoch
                log.note(
                    f"epoch {epoch}: skipped {epoch_skips[epoch]} bad samples (last: {policy.examples[-1]})"
                )
                skipped_at_epoch = policy.skipped
            if done % cfg.log_every == 0 or done == total_steps:
                scale = float(model.logit_scale.detach().exp())
                log.row(done, loss=loss_value, lr=lr, logit_scale=scale, samples=done * cfg.batch_size)
            if evaluate is not None and evaluate.due(done, total_steps):
                evaluate(model, done, log)  # before the step's checkpoint: see lift.train_eval
            if done % cfg.save_every == 0 and done != total_steps:
                save(done)
        if start < total_steps:
            save(total_steps)
    finally:
        log.close()
    return {
        "method": cfg.method, "steps": total_steps, "samples": total_steps * cfg.batch_size,
        "skipped": policy.skipped, "skipped_per_epoch": epoch_skips,
        "unused": data.unused, "unused_note": data.unused_note(), "data_order": data_order(cfg),
        "checkpoint": str(run / "checkpoints" / ckpt.checkpoint_name(total_steps)),
    }  # fmt: skip
