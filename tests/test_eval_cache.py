"""The text embedding cache: a hit is real (no encoder call) and never changes a result."""

import json

import torch
from torch import nn

from eval_standin import StandIn, solid
from lift.evaluate import EvalContext, run_evaluator
from lift.evaluate.text_cache import TextEmbeddingCache, TextStats, embed_texts, text_identity_key


def _fixture(tmp_path):
    for c in ("red", "green", "blue", "purple"):
        solid(tmp_path / "img" / f"{c}.png", c)
    rows = [
        ("red.png", "red", "blue"),
        ("purple.png", "red blue", "green"),
        ("green.png", "green", "green blue"),
    ]
    for s in ("add_obj", "swap_att"):
        data = {
            str(i): {"filename": f, "caption": p, "negative_caption": n} for i, (f, p, n) in enumerate(rows)
        }
        (tmp_path / f"{s}.json").write_text(json.dumps(data))
    return {"annotations": str(tmp_path), "images": str(tmp_path / "img"), "subsets": ["add_obj", "swap_att"]}


def test_cache_hit_is_identical_and_skips_the_encoder(tmp_path):
    cfg = _fixture(tmp_path)
    db = tmp_path / "cache" / "text.sqlite"
    first_model, second_model = StandIn(), StandIn()
    first = run_evaluator(
        "sugarcrepe", first_model, cfg, ctx=EvalContext(progress=False, cache=TextEmbeddingCache(db))
    )
    assert first_model.texts_encoded == 5  # 6 captions, 5 distinct
    ctx = EvalContext(progress=False, cache=TextEmbeddingCache(db))  # reopened: the cache is on disk
    second = run_evaluator("sugarcrepe", second_model, cfg, ctx=ctx)
    assert second_model.text_calls == 0 and second_model.texts_encoded == 0
    assert ctx.text_stats.cache_hits == 5
    assert second.metrics == first.metrics and second.counts == first.counts
    uncached = run_evaluator("sugarcrepe", StandIn(), cfg, ctx=EvalContext(progress=False))
    assert uncached.metrics == first.metrics


def test_cached_vectors_are_bit_identical_and_keyed_by_encoder_identity(tmp_path):
    cache = TextEmbeddingCache(tmp_path / "c.sqlite")
    model = StandIn()
    fresh = embed_texts(model, ["red", "green blue", "red"], cache=cache)
    stats = TextStats()
    again = embed_texts(StandIn(), ["green blue", "red", "blue"], cache=cache, stats=stats)
    assert stats.cache_hits == 2 and stats.encoded == 1  # only the new text is embedded
    assert torch.equal(again[0], fresh[1]) and torch.equal(again[1], fresh[0])
    other = StandIn(version="v2")  # another encoder (identity) must never read v1's vectors
    embed_texts(other, ["red"], cache=cache)
    assert other.texts_encoded == 1
    assert len(cache) == 4


def test_identity_without_a_text_identity_hashes_the_weights():
    class Tower(nn.Module):
        text_identity = None

        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(2, 2)

    a = Tower()
    key = text_identity_key(a)
    assert key is not None and key == text_identity_key(a)
    with torch.no_grad():
        a.proj.weight.add_(1.0)  # a trained text tower is another encoder
    assert text_identity_key(a) != key

    class NoState(nn.Module):
        text_identity = None

    assert text_identity_key(NoState()) is None  # no stable identity: not cached at all
