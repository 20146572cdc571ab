"""lift.text: every pooling against a hand computation, padding sides, batching, identity, bad folders."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lift.errors import LiftError
from lift.text import POOLINGS, TextEncoder, encoder_identity
from lift.text.batching import dedup, plan_batches

VOCAB = "a the red blue green cube ball dog cat on under two three big small photo of"
WORDS = VOCAB.split()
TEXTS = [
    "a red cube",
    "two big dogs on the ball",
    "cat",
    "a photo of three small blue cubes under a green ball",
]


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path / "cache"))


def _word_tokenizer(padding_side: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", padding_side=padding_side)  # fmt: skip


def _save_decoder(folder: Path, kind: str = "llama", padding_side: str = "left", seed: int = 0) -> Path:
    """A tiny random decoder LLM + word tokenizer, saved like a real model folder."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    n = len(WORDS) + 4
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)  # fmt: skip
        model = LlamaForCausalLM(cfg)
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=n, n_embd=32, n_layer=2, n_head=4, n_positions=128))
    model.save_pretrained(folder)
    _word_tokenizer(padding_side).save_pretrained(folder)
    return folder


def _hidden_alone(enc: TextEncoder, text: str) -> torch.Tensor:
    """[T, D] hidden states of one text run alone: no padding at all, the hand computation's input."""
    ids = torch.tensor([enc.tokenize([text])[0]])
    with torch.inference_mode():
        return enc.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]


def test_default_encoder_mean_pooling_by_hand():
    enc = TextEncoder.from_pretrained("default")
    assert enc.pooling == "mean" and enc.dim == 384  # auto read the sentence-transformers pooling config
    got = enc.encode(TEXTS)
    want = torch.stack([F.normalize(_hidden_alone(enc, t).mean(0), dim=0) for t in TEXTS])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert got.dtype == torch.float32 and got.device.type == "cpu"


def test_cls_pooling_and_no_normalize_by_hand():
    enc = TextEncoder.from_pretrained("default", pooling="cls", normalize=False)
    want = torch.stack([_hidden_alone(enc, t)[0] for t in TEXTS])
    torch.testing.assert_close(enc.encode(TEXTS), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pooling_any_padding_side(tmp_path, kind, side):
    enc = TextEncoder.from_pretrained(_save_decoder(tmp_path / kind, kind, side))
    assert enc.pooling == "last" and enc.append_eos  # auto: a causal LM, and the tokenizer adds no EOS
    assert enc.tokenize(["a cube"])[0][-1] == enc.tokenizer.eos_token_id
    texts = TEXTS + ["dog"]  # lengths 1..12 words: every batch is padded
    want = torch.stack([F.normalize(_hidden_alone(enc, t)[-1], dim=0) for t in texts])
    torch.testing.assert_close(enc.encode(texts, batch_size=3), want, atol=1e-5, rtol=0)


def test_max_length_and_instruction_truncate_as_tokens(tmp_path):
    enc = TextEncoder.from_pretrained(_save_decoder(tmp_path / "m"), max_tokens=4, instruction="photo of ")
    ids = enc.tokenize(["a red cube on the ball"])[0]
    assert len(ids) == 4 and ids[-1] == enc.tokenizer.eos_token_id  # 3 tokens + EOS
    assert enc.tokenizer.convert_ids_to_tokens(ids[:3]) == ["photo", "of", "a"]
    plain = TextEncoder.from_pretrained(tmp_path / "m", max_tokens=4, append_eos=False)
    assert len(plain.tokenize(["a red cube on the ball"])[0]) == 4 and not plain.append_eos


MODEL_CODE = """
import torch
from transformers import PretrainedConfig, PreTrainedModel


class TinyConfig(PretrainedConfig):
    model_type = "tiny-embedder"


class TinyEmbedder(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.scale = torch.nn.Parameter(torch.ones(3))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None):
        raise AssertionError("--pooling model must call encode, not forward")

    def encode(self, prompts, instruction="", max_length=4096):
        rows = [[len(instruction + p), float(max_length), 1.0] for p in prompts]
        return torch.tensor(rows) * self.scale
"""


def test_model_pooling_calls_the_models_own_encode(tmp_path):
    folder = tmp_path / "tiny-embedder"
    folder.mkdir()
    (folder / "modeling_tiny.py").write_text(textwrap.dedent(MODEL_CODE))
    import sys

    sys.path.insert(0, str(folder))
    try:
        from modeling_tiny import TinyConfig, TinyEmbedder
    finally:
        sys.path.remove(str(folder))
    cfg = TinyConfig(
        auto_map={"AutoConfig": "modeling_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyEmbedder"}
    )
    TinyEmbedder(cfg).save_pretrained(folder)
    _word_tokenizer("right").save_pretrained(folder)
    with pytest.raises(LiftError, match="trust-remote-code"):
        TextEncoder.from_pretrained(folder, pooling="model")
    enc = TextEncoder.from_pretrained(folder, pooling="model", trust_remote_code=True, instruction="q: ",
                                      max_tokens=9, normalize=False)  # fmt: skip
    got = enc.encode(["ab", "abcd", "ab"])
    torch.testing.assert_close(got, torch.tensor([[5.0, 9, 1], [7, 9, 1], [5, 9, 1]]))
    assert enc.dim == 3 and enc.identity["pooling"] == "model"


def test_sorted_dedup_batches_equal_one_at_a_time():
    enc = TextEncoder.from_pretrained("default")
    texts = [TEXTS[i % 4] + " " + "big " * (i % 5) for i in range(14)] + TEXTS  # duplicates included
    alone = torch.cat([enc.encode([t], batch_size=1) for t in texts])
    torch.testing.assert_close(enc.encode(texts, batch_size=4), alone, atol=1e-5, rtol=0)
    assert enc.encode([]).shape == (0, 384)


def test_batch_planning_and_dedup():
    unique, inverse = dedup(["b", "a", "b", "c", "a"])
    assert unique == ["b", "a", "c"] and inverse.tolist() == [0, 1, 0, 2, 1]
    batches = plan_batches([1, 5, 3, 2, 4, 9], batch_size=2, window=4, slack=1.0)
    assert [b.tolist() for b in batches] == [[1, 2], [3, 0], [5, 4]]  # longest first, within windows of 4
    lengths = [50, 10, 11, 40, 10, 12, 9, 10, 60, 10]
    batches = plan_batches(lengths, batch_size=16, window=100)
    assert [b.tolist() for b in batches] == [[8, 0], [3, 5], [2, 1, 4, 7, 9], [6]]  # cut where 10% shorter
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))


def test_identity_is_portable_and_checked(tmp_path):
    enc = TextEncoder.from_pretrained(_save_decoder(tmp_path / "a" / "enc"), max_tokens=16)
    ident = enc.identity
    assert ident["name"] == "enc" and ident["pooling"] == "last" and ident["dim"] == 32
    assert str(tmp_path) not in str(ident) and len(ident["weights_sha256"]) == 64
    moved = Path(shutil.copytree(tmp_path / "a" / "enc", tmp_path / "b" / "enc"))
    again = TextEncoder.from_identity(ident, moved)
    assert again.identity == ident and again.max_tokens == 16
    torch.testing.assert_close(again.encode(TEXTS), enc.encode(TEXTS))
    assert encoder_identity(moved, like=ident) == ident
    other = _save_decoder(tmp_path / "c" / "enc", seed=1)  # same name, other weights
    with pytest.raises(LiftError, match="weights_sha256"):
        TextEncoder.from_identity(ident, other)


def test_weights_hash_follows_file_changes(tmp_path):
    from lift.text.weights import weights_sha256

    folder = _save_decoder(tmp_path / "m")
    first = weights_sha256(folder)
    assert (tmp_path / "cache" / "weights_sha256.json").is_file() and weights_sha256(folder) == first
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert weights_sha256(folder) != first


def test_bad_folders_get_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LiftError, match="not a Hugging Face model folder"):
        TextEncoder.from_pretrained(tmp_path / "empty")
    with pytest.raises(LiftError, match="not a folder"):
        TextEncoder.from_pretrained(tmp_path / "nope")
    folder = _save_decoder(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(LiftError, match="cannot load the weights") as e:
        TextEncoder.from_pretrained(folder)
    assert "\n" not in str(e.value)
    with pytest.raises(LiftError, match="--pooling must be one of"):
        TextEncoder.from_pretrained("default", pooling="max")


def test_poolings_registry():
    assert set(POOLINGS) == {"mean", "cls", "last", "model"}
    hidden = torch.arange(24, dtype=torch.float32).view(2, 3, 4)  # [B=2, T=3, D=4]
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(POOLINGS["last"](hidden, left), hidden[[0, 1], [2, 2]])
    torch.testing.assert_close(POOLINGS["last"](hidden, right), hidden[[0, 1], [1, 2]])
    torch.testing.assert_close(POOLINGS["mean"](hidden, right)[0], hidden[0, :2].mean(0))


def _st_folder(folder: Path, flags: dict, modules: list[str]) -> Path:
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    types = [f"sentence_transformers.models.{t}" for t in modules]
    paths = {"Pooling": "1_Pooling"}
    entries = [
        {"idx": i, "type": t, "path": paths.get(t.rsplit(".", 1)[-1], "")} for i, t in enumerate(types)
    ]
    (folder / "modules.json").write_text(json.dumps(entries))
    return folder


def test_auto_pooling_reads_sentence_transformers_config_or_architecture(tmp_path):
    from lift.text.pooling import resolve_pooling

    encoder, decoder = (
        SimpleNamespace(architectures=["BertModel"]),
        SimpleNamespace(architectures=["QwenForCausalLM"]),
    )
    assert resolve_pooling("auto", tmp_path, encoder) == "mean"
    assert resolve_pooling("auto", tmp_path, decoder) == "last"
    assert resolve_pooling("cls", tmp_path, decoder) == "cls"
    st = ["Transformer", "Pooling", "Normalize"]
    assert (
        resolve_pooling("auto", _st_folder(tmp_path / "a", {"pooling_mode_cls_token": True}, st), encoder)
        == "cls"
    )
    assert (
        resolve_pooling("auto", _st_folder(tmp_path / "b", {"pooling_mode_lasttoken": True}, st), encoder)
        == "last"
    )
    with pytest.raises(LiftError, match="pooling_mode_max_tokens is not supported"):
        resolve_pooling("auto", _st_folder(tmp_path / "c", {"pooling_mode_max_tokens": True}, st), encoder)
    dense = _st_folder(tmp_path / "d", {"pooling_mode_mean_tokens": True}, [*st, "Dense"])
    with pytest.raises(LiftError, match="modules Dense after pooling are not applied"):
        resolve_pooling("auto", dense, encoder)
