"""Metrics on hand-computed cases (ties are wrong) and retrieval against a brute-force reference."""

import json
import math

import pytest
import torch

from eval_standin import StandIn, solid
from lift.evaluate import EvalContext, run_evaluator
from lift.evaluate.formats import RetrievalData
from lift.evaluate.ranking import gt_ranks
from lift.evaluate.retrieval import gallery, retrieval_metrics
from lift.evaluate.sugarcrepe import pair_correct
from lift.evaluate.zeroshot import class_embeddings


def test_pair_correct_is_strict():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, -0.8]])  # last: a tie (0.6 vs 0.6)
    assert pair_correct(img, pos, neg).tolist() == [True, False, False]


def _sugarcrepe_fixture(tmp_path):
    images = tmp_path / "images"
    for c in ("red", "green", "blue"):
        solid(images / f"{c}.png", c)
    ann = tmp_path / "ann"
    ann.mkdir()
    # Hand-computed scores against the stand-in (cosine of colour vectors):
    items = {
        "add_obj": [("red.png", "red", "blue"), ("green.png", "green thing", "red thing")],  # 1>0, 1>0
        "add_att": [("blue.png", "blue", "red blue")],  # 1 > 0.707: correct
        "replace_obj": [("red.png", "red circle", "red square")],  # tie (1 vs 1): wrong
        "replace_att": [("red.png", "green", "red")],  # 0 < 1: wrong
        "replace_rel": [
            ("green.png", "green", "blue"),
            ("blue.png", "red", "green"),
        ],  # right, tie 0=0: wrong
        "swap_obj": [("blue.png", "red blue", "green")],  # 0.707 > 0: correct
        "swap_att": [("red.png", "red green", "red")],  # 0.707 < 1: wrong
    }
    for subset, rows in items.items():
        data = {
            str(i): {"filename": f, "caption": p, "negative_caption": n} for i, (f, p, n) in enumerate(rows)
        }
        (ann / f"{subset}.json").write_text(json.dumps(data))
    return ann, images, items


def test_sugarcrepe_hand_computed(tmp_path):
    ann, images, items = _sugarcrepe_fixture(tmp_path)
    model = StandIn()
    result = run_evaluator(
        "sugarcrepe", model, {"annotations": str(ann), "images": str(images)}, ctx=EvalContext(progress=False)
    )
    expected = {"add_obj": 100.0, "add_att": 100.0, "replace_obj": 0.0, "replace_att": 0.0,
                "replace_rel": 50.0, "swap_obj": 100.0, "swap_att": 0.0}  # fmt: skip
    for subset, acc in expected.items():
        assert result.metrics[subset] == pytest.approx(acc)
        assert result.counts[subset] == {"n": len(items[subset]), "skipped": 0}
    assert result.metrics["mean"] == pytest.approx(sum(expected.values()) / 7)
    # Each distinct image and caption embedded exactly once, in batches.
    unique_texts = {t for rows in items.values() for _, p, n in rows for t in (p, n)}
    assert model.images_encoded == 3 and model.image_calls == 1
    assert model.texts_encoded == len(unique_texts) and model.text_calls == 1
    assert result.text_encoder == model.text_identity


def test_sugarcrepe_heldout_subset_is_reported_separately(tmp_path):
    ann, images, _ = _sugarcrepe_fixture(tmp_path)
    (ann / "heldout.json").write_text(json.dumps({"replace_rel": ["1"], "add_obj": ["0", "1"]}))
    cfg = {"annotations": str(ann), "images": str(images), "subsets": ["add_obj", "replace_rel", "swap_att"]}
    result = run_evaluator("sugarcrepe", StandIn(), cfg, ctx=EvalContext(progress=False))
    assert result.metrics["heldout/replace_rel"] == 0.0 and result.counts["heldout/replace_rel"]["n"] == 1
    assert result.metrics["heldout/add_obj"] == 100.0 and result.counts["heldout/add_obj"]["n"] == 2
    assert result.counts["heldout/swap_att"] == {"n": 0, "skipped": 0}
    assert "heldout/swap_att" not in result.metrics  # no items: no metric, never a made-up number
    assert result.metrics["heldout/mean"] == 50.0
    assert result.metrics["replace_rel"] == 50.0 and "add_att" not in result.metrics


def test_zeroshot_hand_computed_with_ties(tmp_path):
    root = tmp_path / "val"
    solid(root / "blue" / "a.png", "blue")
    solid(root / "green" / "a.png", "green")
    solid(root / "green" / "b.png", "blue")  # wrong: ranked 2nd of 3
    solid(root / "red" / "a.png", "red")
    solid(root / "red" / "b.png", "purple")  # ties red with blue: a miss at top-1, a hit at top-2
    result = run_evaluator("zeroshot", StandIn(), {"images": str(root), "templates": ["{label}"]},
                           ctx=EvalContext(progress=False, batch_size=2))  # fmt: skip
    assert result.metrics["top1"] == pytest.approx(100 * 3 / 5)
    assert result.metrics["top5"] == 100.0  # 3 classes: top-5 is top-3
    assert result.metrics["mean_recall"] == pytest.approx(100 * (1 + 0.5 + 0.5) / 3)
    assert result.counts["images"] == {"n": 5, "skipped": 0}


def test_template_ensemble_is_the_renormalised_mean(tmp_path):
    emb = class_embeddings(
        StandIn(), ["red", "green"], ["a {label}", "{} and blue"], EvalContext(progress=False)
    )
    r = 1 / math.sqrt(2)
    red = torch.tensor([1 + r, 0, r])
    green = torch.tensor([0, 1 + r, r])
    assert torch.allclose(emb, torch.stack([red / red.norm(), green / green.norm()]), atol=1e-6)


def _brute_force(img, txt, owner, per_image, k):
    """Reference recall with explicit top-k lists (scores are distinct: no ties)."""
    s = img @ txt.T
    i2t = sum(bool(set(s[i].topk(k).indices.tolist()) & set(per_image[i].tolist())) for i in range(len(img)))
    t2i = sum(int(owner[t]) in s[:, t].topk(k).indices.tolist() for t in range(len(txt)))
    return 100 * i2t / len(img), 100 * t2i / len(txt)


@pytest.mark.parametrize("protocol", ["first-caption", "all-captions"])
def test_retrieval_matches_brute_force(protocol):
    g = torch.Generator().manual_seed(0)
    n, d = 40, 8
    caps = [[f"c{i}-{j}" for j in range(1 + (i % 5))] for i in range(n)]
    texts, owner, per_image = gallery(RetrievalData(images=[None] * n, captions=caps), protocol)
    assert len(texts) == (n if protocol == "first-caption" else sum(map(len, caps)))
    img = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(img[owner] + 0.9 * torch.randn(len(texts), d, generator=g), dim=-1)
    metrics = retrieval_metrics(img, txt, owner, per_image)
    for k in (1, 5, 10):
        i2t, t2i = _brute_force(img, txt, owner, per_image, k)
        assert metrics[f"i2t_R@{k}"] == pytest.approx(i2t)
        assert metrics[f"t2i_R@{k}"] == pytest.approx(t2i)
    assert 0 < metrics["i2t_R@1"] < metrics["i2t_R@10"] <= 100  # the fixture is neither trivial nor hopeless


def test_ranks_count_ties_against_the_model_and_other_positives_never():
    scores = torch.tensor([[0.9, 0.9, 0.1], [0.5, 0.8, 0.8], [0.3, 0.2, 0.1]])
    positive = torch.tensor([[True, False, False], [True, True, False], [False, False, True]])
    # row 0: a tie with a negative -> rank 1; row 1: best positive 0.8 tied with negative 0.8 -> rank 1;
    # row 2: two negatives above -> rank 2.
    assert gt_ranks(scores, positive).tolist() == [1, 1, 2]
    positive[1] = torch.tensor([True, True, True])
    assert gt_ranks(scores, positive)[1] == 0
