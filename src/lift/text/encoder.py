"""The frozen text encoder: any local Hugging Face model folder, a pooling, and fast batched encoding.

enc = TextEncoder.from_pretrained("default")            # or a folder; offline, never a hub
vectors = enc.encode(["a red cube", "two dogs"])        # Tensor [2, enc.dim] float32 on CPU
enc.identity                                            # recorded in stores and checkpoints
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from packaging.version import Version

from lift.errors import LiftError, first_line
from lift.identity import check_same_encoder
from lift.text.batching import dedup, plan_batches
from lift.text.default import resolve_encoder_path
from lift.text.pooling import MODEL, POOLINGS, is_decoder, resolve_pooling
from lift.text.weights import weights_sha256

# transformers renamed torch_dtype to dtype in 4.56
_DTYPE_ARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
WINDOW_BATCHES = 64  # texts are length-sorted within windows of this many batches
_IGNORED_MISSING = ("pooler.",)  # heads AutoModel adds but embedding models never use
# tokenizers that know no limit report transformers' VERY_LARGE_INTEGER (1e30) as model_max_length
_NO_LIMIT = 10**9
_POSITION_FIELDS = ("max_position_embeddings", "n_positions")  # GPT-2 calls it n_positions


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """transformers draws a progress bar per weight load; a job that loads once needs none."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _load(what: str, path: Path, fn: Callable[[], Any], trust_remote_code: bool = False) -> Any:
    try:
        with _quiet_loading():
            return fn()
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError) as e:
        text = str(e)
        if not trust_remote_code and ("custom code" in text or "trust_remote_code" in text):
            raise LiftError(
                f"{path}: this model folder needs its own Python code to load its {what}; pass "
                "--trust-remote-code to run it (only for a folder you trust)"
            ) from None
        raise LiftError(f"{path}: cannot load the {what} of this model folder: {first_line(e)}") from None


def token_limit(config: Any, tokenizer: Any) -> tuple[int, str] | None:
    """The most tokens the model takes and what says so (the smaller of the tokenizer's
    model_max_length and the config's position count), or None when neither knows a limit."""
    found = []
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
        found.append((limit, "the tokenizer's model_max_length"))
    for name in _POSITION_FIELDS:
        limit = getattr(config, name, None)
        if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
            found.append((limit, f"the config's {name}"))
            break
    return min(found) if found else None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    try:
        return torch.device(device)
    except RuntimeError:
        raise LiftError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}") from None


def _resolve_append_eos(append_eos: bool | None, pooling: str, tokenizer: Any) -> bool:
    """Default: append EOS for last-token pooling when the tokenizer does not already end with it,
    because LLM embedders are trained to read the whole text into the final EOS state."""
    eos = tokenizer.eos_token_id
    if append_eos is None:
        if pooling != "last" or eos is None:
            return False
        ids = tokenizer("a")["input_ids"]
        return not ids or ids[-1] != eos
    if append_eos and eos is None:
        raise LiftError("--append-eos: this tokenizer has no EOS token")
    return bool(append_eos)


class TextEncoder:
    """A frozen model + tokenizer + pooling. Build it with `from_pretrained` or `from_identity`."""

    def __init__(
        self,
        *,
        path: Path,
        model: Any,
        tokenizer: Any,
        pooling: str,
        max_tokens: int,
        instruction: str,
        normalize: bool,
        append_eos: bool,
        device: torch.device,
        batch_size: int,
    ) -> None:
        self.path, self.model, self.tokenizer = path, model, tokenizer
        self.pooling, self.max_tokens, self.instruction = pooling, max_tokens, instruction
        self.normalize, self.append_eos = normalize, append_eos
        self.device, self.batch_size = device, batch_size
        # with left padding, positions must count real tokens only, else absolute-position models
        # (GPT-2) see each text shifted by its padding
        self._pass_positions = tokenizer.padding_side == "left" and (
            "position_ids" in inspect.signature(model.forward).parameters
        )
        self._weights_sha256: str | None = None
        self.dim = int(self._encode_unique(["a"], 1)[0].shape[1])

    @classmethod
    def from_pretrained(
        cls,
        path_or_default: str | os.PathLike = "default",
        *,
        pooling: str = "auto",
        max_tokens: int = 77,
        instruction: str = "",
        normalize: bool = True,
        append_eos: bool | None = None,
        dtype: str = "float32",
        device: str = "auto",
        batch_size: int = 128,
        trust_remote_code: bool = False,
    ) -> TextEncoder:
        """Load a local model folder ("default": the packaged all-MiniLM-L6-v2), offline."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = resolve_encoder_path(path_or_default)
        if dtype not in DTYPES:
            raise LiftError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if not isinstance(max_tokens, int) or max_tokens < 2:
            raise LiftError(f"--max-tokens must be an integer >= 2, got {max_tokens!r}")
        if batch_size < 1:
            raise LiftError(f"--batch-size must be >= 1, got {batch_size}")
        if pooling == MODEL and not trust_remote_code:
            raise LiftError(
                f"{path}: --pooling model runs the model's own code; pass --trust-remote-code to allow it"
            )
        remote = {"local_files_only": True, "trust_remote_code": trust_remote_code}
        config = _load("config", path, lambda: AutoConfig.from_pretrained(path, **remote), trust_remote_code)
        pooling = resolve_pooling(pooling, path, config)
        tokenizer = _load(
            "tokenizer", path, lambda: AutoTokenizer.from_pretrained(path, **remote), trust_remote_code
        )
        limit = token_limit(config, tokenizer)
        if limit and max_tokens > limit[0]:  # checked before the weights load and before any output exists
            raise LiftError(
                f"{path}: --max-tokens {max_tokens} is beyond this model's limit of {limit[0]} tokens "
                f"({limit[1]}); use --max-tokens {limit[0]} or less"
            )
        if tokenizer.pad_token_id is None:  # decoder LLMs often have none; the mask hides pads anyway
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
            if tokenizer.pad_token_id is None:
                raise LiftError(f"{path}: the tokenizer has no pad, EOS or unknown token to pad batches with")
        dev = resolve_device(device)
        model, info = _load(
            "weights",
            path,
            lambda: AutoModel.from_pretrained(
                path, **{_DTYPE_ARG: DTYPES[dtype]}, output_loading_info=True, **remote
            ),
            trust_remote_code,
        )
        missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(_IGNORED_MISSING))
        if missing:
            raise LiftError(
                f"{path}: the weights do not match the model config ({len(missing)} missing, e.g. {missing[0]!r}); "
                "the folder would give randomly initialised embeddings"
            )
        return cls(
            path=path,
            model=model.to(dev).eval(),
            tokenizer=tokenizer,
            pooling=pooling,
            max_tokens=max_tokens,
            instruction=instruction,
            normalize=normalize,
            append_eos=_resolve_append_eos(append_eos, pooling, tokenizer),
            device=dev,
            batch_size=batch_size,
        )

    @classmethod
    def from_identity(cls, identity: dict[str, Any], path: str | os.PathLike, **runtime: Any) -> TextEncoder:
        """Rebuild the encoder an identity describes from `path`, and check its weights are the same."""
        # identity key -> from_pretrained argument ("max_length" is what stores record for --max-tokens)
        names = {"pooling": "pooling", "max_length": "max_tokens", "instruction": "instruction",
                 "normalize": "normalize", "append_eos": "append_eos"}  # fmt: skip
        settings = {arg: identity[k] for k, arg in names.items() if k in identity}
        enc = cls.from_pretrained(path, **settings, **runtime)
        check_same_encoder(
            identity, enc.identity, expected_from="the recorded text encoder", found_from=str(path)
        )
        return enc

    @property
    def is_decoder(self) -> bool:
        return is_decoder(self.model.config)

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = weights_sha256(self.path)
        return self._weights_sha256

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that decides the vectors; never the local path, so a moved folder still matches."""
        return {
            "name": self.path.name,
            "weights_sha256": self.weights_sha256,
            "pooling": self.pooling,
            "max_length": self.max_tokens,  # the recorded name of --max-tokens in stores and checkpoints
            "instruction": self.instruction,
            "normalize": self.normalize,
            "append_eos": self.append_eos,
            "dim": self.dim,
        }

    # ---- encoding ---------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to max_tokens (EOS included when appended), unpadded."""
        return self.tokenize_and_count(texts)[0]

    def tokenize_and_count(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """`tokenize`'s ids, and a bool per text: was it cut at max_tokens (instruction included)?"""
        prefixed = [self.instruction + t for t in texts] if self.instruction else list(texts)
        limit = self.max_tokens - int(self.append_eos)
        batch = self.tokenizer(prefixed, truncation=True, max_length=limit, return_attention_mask=False)
        ids = batch["input_ids"]
        if batch.encodings is not None:  # fast tokenizers keep what truncation cut off: no second pass
            cut = np.fromiter((bool(e.overflowing) for e in batch.encodings), dtype=bool, count=len(ids))
        else:
            full = self.tokenizer(prefixed, return_attention_mask=False, verbose=False)["input_ids"]
            cut = np.fromiter((len(a) > len(b) for a, b in zip(full, ids)), dtype=bool, count=len(ids))
        if self.append_eos:
            ids = [x + [self.tokenizer.eos_token_id] for x in ids]
        return ids, cut

    def _pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T] input ids and mask, padded to the longest in the batch on the tokenizer's side."""
        width = max(len(x) for x in ids)
        tokens = np.full((len(ids), width), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        left = self.tokenizer.padding_side == "left"
        for row, x in enumerate(ids):
            span = slice(width - len(x), width) if left else slice(0, len(x))
            tokens[row, span] = x
            mask[row, span] = 1
        return torch.from_numpy(tokens).to(self.device), torch.from_numpy(mask).to(self.device)

    def _forward(self, ids: list[list[int]], texts: list[str]) -> torch.Tensor:
        """[B, dim] float32 vectors for one batch."""
        if self.pooling == MODEL:
            vec = self.model.encode(texts, instruction=self.instruction, max_length=self.max_tokens)
        else:
            tokens, mask = self._pad(ids)
            kwargs = {"input_ids": tokens, "attention_mask": mask}
            if self._pass_positions:
                kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
            out = self.model(**kwargs)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # [B, T, D]
            vec = POOLINGS[self.pooling](hidden, mask)
        vec = torch.as_tensor(vec).float()
        return F.normalize(vec, dim=-1) if self.normalize else vec

    def _encode_unique(
        self, texts: list[str], batch_size: int, progress: Callable[[int], Any] | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        window = batch_size * WINDOW_BATCHES
        out: torch.Tensor | None = None
        cut = np.zeros(len(texts), dtype=bool)
        with torch.inference_mode():
            for start in range(0, len(texts), window):
                chunk = texts[start : start + window]
                ids, cut[start : start + len(chunk)] = self.tokenize_and_count(chunk)
                for idx in plan_batches([len(x) for x in ids], batch_size, window):
                    vec = self._forward([ids[j] for j in idx], [chunk[j] for j in idx]).cpu()
                    if out is None:
                        out = torch.empty(len(texts), vec.shape[1])
                    out[torch.from_numpy(start + idx)] = vec
                    if progress is not None:
                        progress(len(idx))
        return (out if out is not None else torch.empty(0, getattr(self, "dim", 0))), cut

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: Any = False,
        return_truncated: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, np.ndarray]:
        """[N, dim] float32 on CPU, in input order; each distinct text is embedded once.

        `progress`: True for a tqdm bar, or a callable given the number of texts done per batch.
        `return_truncated`: also return a bool [N] array, True for each text cut at max_tokens
        (counted in this encoder's tokenization, also for `--pooling model`).
        """
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise LiftError(f"text {i} is {type(t).__name__}, not a string")
        unique, inverse = dedup(texts)
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=len(unique), unit="text", desc="embedding", dynamic_ncols=True)
            progress = bar.update
        try:
            vectors, cut = self._encode_unique(unique, batch_size or self.batch_size, progress or None)
        finally:
            if bar is not None:
                bar.close()
        vectors = vectors[torch.from_numpy(inverse)]
        return (vectors, cut[inverse]) if return_truncated else vectors


def encoder_identity(path: str | os.PathLike, *, like: dict[str, Any]) -> dict[str, Any]:
    """The identity the folder at `path` would have with `like`'s settings, without loading the model.

    Checks name and weights (the settings come from `like`); use `TextEncoder.from_identity` to check all.
    """
    folder = resolve_encoder_path(path)
    return {**like, "name": folder.name, "weights_sha256": weights_sha256(folder)}
