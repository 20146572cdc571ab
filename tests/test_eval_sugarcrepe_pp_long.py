"""SugarCrepe++ (image-text and text-only tasks) and long-caption retrieval (DCI, DOCCI, Urban1k,
ShareGPT4V-1k), each on hand-computed fixtures written in the benchmark's published layout; ties are
wrong, as in the official scripts; bad input is one line before any model runs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from eval_standin import StandIn, solid
from lift.checkpoint import save_checkpoint
from lift.cli import main
from lift.config import config_to_dict
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import EvalContext, run_evaluator
from lift.evaluate.long_retrieval import TextLengthWarning
from lift.evaluate.results import compare_table, markdown_table
from lift.models import ModelConfig, create_model

CTX = {"progress": False}


def _no_model(monkeypatch) -> None:
    """Any model load fails the test: bad input must be refused before it."""
    monkeypatch.setattr("lift.load", lambda *a, **k: pytest.fail("a model was loaded"))


def _standin(monkeypatch, model=None) -> None:
    monkeypatch.setattr("lift.load", lambda *a, **k: model or StandIn())


def _eval(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `lift eval ...` on a stand-in checkpoint; argparse's errors too."""
    try:
        code = main(["eval", *argv, "--checkpoint", "standin", "--no-cache", "--workers", "0", "--device", "cpu",
                     "--no-progress"])  # fmt: skip
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- SugarCrepe++


def _scpp(root: Path) -> tuple[Path, Path]:
    """The release's layout: a JSON list per subset of {id, filename, caption, caption2, negative_caption}.

    Against the stand-in (cosines of colour vectors; the images are pure colours):
      replace_att 0: red image, "red" / "red thing" vs "blue": 1, 1 > 0; text 1 > 0, 0: all right
      replace_att 1: green image, "green" / "blue" vs "red": 1 > 0 but 0 = 0 (tie): ITT wrong, P1 right,
                     P2 wrong; text 0 = 0 (tie): wrong
      replace_att 2: blue image, "blue" / "red blue" vs "green blue": 1 > .707 but .707 = .707 (tie): ITT
                     wrong; text .707 = .707 (tie): wrong
      swap_obj 0:    red image, "blue" / "blue thing" vs "red": 0 < 1: ITT wrong; text 1 > 0, 0: right
    """
    for c in ("red", "green", "blue"):
        solid(root / "val2017" / f"{c}.png", c)
    rows = {
        "replace_att": [("red.png", "red", "red thing", "blue"), ("green.png", "green", "blue", "red"),
                        ("blue.png", "blue", "red blue", "green blue")],
        "swap_obj": [("red.png", "blue", "blue thing", "red")],
    }  # fmt: skip
    (root / "data").mkdir(parents=True)
    for subset, items in rows.items():
        data = [{"id": i, "filename": f, "caption": p1, "caption2": p2, "negative_caption": n}
                for i, (f, p1, p2, n) in enumerate(items)]  # fmt: skip
        (root / "data" / f"{subset}.json").write_text(json.dumps(data, indent=1))
    return root / "data", root / "val2017"


def test_sugarcrepe_pp_hand_computed_in_the_release_layout(tmp_path):
    ann, images = _scpp(tmp_path)
    cfg = {"annotations": str(ann), "images": str(images), "subsets": ["replace_att", "swap_obj"]}
    result = run_evaluator("sugarcrepe-pp", StandIn(), cfg, ctx=EvalContext(**CTX))
    third = 100 / 3
    expected = {
        "itt/replace_att": third, "itt_p1/replace_att": 100.0, "itt_p2/replace_att": third,
        "tot/replace_att": third, "itt/swap_obj": 0.0, "itt_p1/swap_obj": 0.0, "itt_p2/swap_obj": 0.0,
        "tot/swap_obj": 100.0, "itt/mean": third / 2, "tot/mean": (third + 100) / 2,
    }  # fmt: skip
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value), key
    assert result.counts["itt/replace_att"] == {"n": 3, "skipped": 0}
    table = markdown_table(result)
    assert "| model | RepO | RepA | RepR | SwpO | SwpA | Mean |" in table
    assert "| standin model (tot) | – | 33.3 | – | 100.0 | – | 66.7 |" in table


def test_sugarcrepe_pp_text_only_needs_no_images(tmp_path, monkeypatch, capsys):
    ann, _ = _scpp(tmp_path)
    model = StandIn()
    result = run_evaluator(
        "sugarcrepe-pp", model, {"annotations": str(ann), "subsets": ["replace_att"], "tasks": ["tot"]},
        ctx=EvalContext(**CTX),
    )  # fmt: skip
    assert result.metrics == {"tot/replace_att": pytest.approx(100 / 3), "tot/mean": pytest.approx(100 / 3)}
    assert model.image_calls == 0  # the text side alone
    _standin(monkeypatch)
    code, out, _ = _eval(capsys, "sugarcrepe-pp", "--annotations", str(ann), "--tasks", "tot", "--subsets",
                         "swap_obj", "--json")  # fmt: skip
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["metrics"]["tot/swap_obj"] == 100.0
    _no_model(monkeypatch)
    code, _, err = _eval(capsys, "sugarcrepe-pp", "--annotations", str(ann))  # ITT without --images
    assert code == 2 and err.count("\n") == 1
    assert "the image-text task needs images= (--images DIR); or run --tasks tot" in err


def test_sugarcrepe_pp_bad_input_is_one_line_before_any_model(tmp_path, monkeypatch, capsys):
    ann, images = _scpp(tmp_path)
    items = json.loads((ann / "swap_obj.json").read_text())
    del items[0]["caption2"]
    (ann / "swap_obj.json").write_text(json.dumps(items))
    _no_model(monkeypatch)
    argv = ["sugarcrepe-pp", "--annotations", str(ann), "--images", str(images), "--subsets", "swap_obj"]
    code, _, err = _eval(capsys, *argv)
    assert code == 2 and err.count("\n") == 1
    assert f"{ann / 'swap_obj.json'}: item '0': missing key(s) ['caption2']" in err
    (images / "green.png").unlink()  # named by replace_att item 1
    code, _, err = _eval(capsys, *argv[:-1], "replace_att")
    assert code == 2 and err.count("\n") == 1 and f"{images / 'green.png'}: image not found" in err


def test_sugarcrepe_pp_skips_are_counted_beside_each_metric(tmp_path, monkeypatch, capsys):
    ann, images = _scpp(tmp_path)
    (images / "green.png").unlink()
    _standin(monkeypatch)
    code, out, _ = _eval(capsys, "sugarcrepe-pp", "--annotations", str(ann), "--images", str(images),
                         "--subsets", "replace_att", "--on-error", "skip", "--json")  # fmt: skip
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["counts"]["itt/replace_att"] == {"n": 2, "skipped": 1}
    assert result["counts"]["tot/replace_att"] == {"n": 3, "skipped": 0}  # texts need no image
    assert result["metrics"]["itt/replace_att"] == 50.0
    assert "| standin standin (itt) | – | 50.0 (n=2, skipped=1) |" in out
    assert "skipped 1" in out


# ---------------------------------------------------------------- long-caption retrieval

# Against the stand-in: captions (1,0,0), (0,1,0), (0,.707,.707) for red, green, blue images.
# image->text: every image's own caption is its best: R@1 100. text->image: the third caption scores the
# green and the blue image alike (a tie counts against the model): R@1 2/3, R@5 100.
LONG = [("red", "a red scene"), ("green", "a green scene"), ("blue", "a blue and green scene")]
TIED = {"i2t_R@1": 100.0, "i2t_R@5": 100.0, "t2i_R@1": 200 / 3, "t2i_R@5": 100.0}


def _check(result, expected):
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value), key


def _urban1k(root: Path, ext: str = "jpg", captions=LONG) -> Path:
    for colour, caption in captions:
        solid(root / "image" / f"{colour}.{ext}", colour)
        (root / "caption").mkdir(parents=True, exist_ok=True)
        (root / "caption" / f"{colour}.txt").write_text(caption + "\n")
    return root


def test_urban1k_layout(tmp_path):
    # JPEG colours are not exact, so no tie here: every caption finds its image and back
    root = _urban1k(tmp_path / "Urban1k", captions=[(c, f"a {c} scene") for c, _ in LONG])
    cfg = {"format": "urban1k", "annotations": str(root), "images": str(root / "image")}
    result = run_evaluator("long-retrieval", StandIn(), cfg, ctx=EvalContext(**CTX))
    _check(result, {"i2t_R@1": 100.0, "t2i_R@1": 100.0})
    assert result.counts["images"] == {"n": 3, "skipped": 0} and "truncated" not in result.metrics
    # the caption folder itself, and images of another extension with the same name (the synth world's png)
    png = _urban1k(tmp_path / "png", "png")
    (png / "heldout.json").write_text(
        json.dumps({"images": ["blue"]})
    )  # the synth world marks held-out images
    cfg = {"format": "urban1k", "annotations": str(png / "caption"), "images": str(png)}
    result = run_evaluator("long-retrieval", StandIn(), cfg, ctx=EvalContext(**CTX))
    _check(result, {**TIED, "heldout/i2t_R@1": 100.0, "heldout/t2i_R@1": 0.0, "heldout/t2i_R@5": 100.0})
    assert result.counts["heldout/images"] == {"n": 1, "skipped": 0}


def test_sharegpt4v_1k_layout_takes_the_first_entries(tmp_path):
    for colour, _ in LONG:
        solid(tmp_path / "coco" / "train2017" / f"{colour}.png", colour)
    entries = [{"id": str(i), "image": f"coco/train2017/{c}.png",
                "conversations": [{"from": "human", "value": "<image>\nDescribe it."},
                                  {"from": "gpt", "value": cap.replace(" scene", "\nscene")}]}
               for i, (c, cap) in enumerate(LONG)]  # fmt: skip
    entries.append({"id": "late", "image": "coco/train2017/absent.png", "conversations": []})
    path = tmp_path / "share-captioner_coco_lcs_sam_1246k_1107.json"
    path.write_text(json.dumps(entries))
    cfg = {"format": "sharegpt4v", "annotations": str(path), "images": str(tmp_path), "limit": 3}
    result = run_evaluator("long-retrieval", StandIn(), cfg, ctx=EvalContext(**CTX))
    _check(result, TIED)
    assert result.counts["texts"] == {"n": 3, "skipped": 0}
    with pytest.raises(LiftError, match=r"entry 3: caption: missing caption"):  # the 4th is within 1000
        run_evaluator("long-retrieval", StandIn(), {**cfg, "limit": None}, ctx=EvalContext(**CTX))


def test_docci_layout_and_its_split(tmp_path):
    for colour, _ in LONG:
        solid(tmp_path / "images" / f"test_{colour}.jpg".replace(".jpg", ".png"), colour)
    lines = [{"example_id": f"test_{i:05d}", "split": "test", "image_file": f"test_{c}.png", "description": cap}
             for i, (c, cap) in enumerate(LONG)]  # fmt: skip
    lines.insert(
        1, {"example_id": "train_00000", "split": "train", "image_file": "train_x.jpg", "description": "red"}
    )
    ann = tmp_path / "docci_descriptions.jsonlines"
    ann.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    cfg = {"format": "docci", "annotations": str(ann), "images": str(tmp_path / "images")}
    result = run_evaluator("long-retrieval", StandIn(), cfg, ctx=EvalContext(**CTX))
    _check(result, TIED)
    assert result.counts["images"]["n"] == 3  # the train line is not in the test split
    with pytest.raises(LiftError, match=r"train_x\.jpg: image not found"):
        run_evaluator("long-retrieval", StandIn(), {**cfg, "split": "all"}, ctx=EvalContext(**CTX))


def _dci(root: Path) -> Path:
    base = root / "densely_captioned_images"
    for i, (colour, caption) in enumerate(LONG):
        solid(base / "photos" / f"sa_{i}.png", colour)
        short, extra = caption.split(" ", 1)
        entry = {"image": f"sa_{i}.png", "short_caption": short, "extra_caption": extra, "mask_data": {},
                 "mask_keys": []}  # fmt: skip
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"sa_{i}.json").write_text(json.dumps(entry))
    splits = {"train": ["sa_0.json"], "valid": ["sa_1.json"], "test": ["sa_2.json"]}
    (base / "splits.json").write_text(json.dumps(splits))
    return base


def test_dci_layout_extended_caption_and_splits(tmp_path):
    base = _dci(tmp_path)
    cfg = {"format": "dci", "annotations": str(tmp_path), "images": str(base / "photos")}
    result = run_evaluator("long-retrieval", StandIn(), cfg, ctx=EvalContext(**CTX))
    _check(result, TIED)  # every split: short_caption + "\n" + extra_caption per image
    one = run_evaluator("long-retrieval", StandIn(), {**cfg, "split": "test"}, ctx=EvalContext(**CTX))
    assert one.counts["images"]["n"] == 1 and one.metrics["i2t_R@1"] == 100.0
    with pytest.raises(LiftError, match=r"splits\.json: no split 'val'; known: \['test', 'train', 'valid'\]"):
        run_evaluator("long-retrieval", StandIn(), {**cfg, "split": "val"}, ctx=EvalContext(**CTX))


class _WordCut(StandIn):
    """A stand-in whose text side cuts captions at 4 words."""

    text_max_tokens = 4

    def count_truncated(self, texts: list[str]) -> int:
        return sum(len(t.split()) > self.text_max_tokens for t in texts)


def test_captions_cut_at_the_limit_are_counted_beside_the_recalls(tmp_path, monkeypatch, capsys):
    root = _urban1k(tmp_path / "Urban1k", "png")
    cfg = {"format": "urban1k", "annotations": str(root), "images": str(root / "image")}
    result = run_evaluator("long-retrieval", _WordCut(), cfg, ctx=EvalContext(**CTX))
    assert result.metrics["truncated"] == 1.0  # "a blue and green scene": 5 words
    assert result.notes["max_tokens"] == 4 and result.notes["captions"] == 3
    assert "| I2T R@1 | I2T R@5 | I2T R@10 | T2I R@1 | T2I R@5 | T2I R@10 | cut at max tokens |" in (
        markdown_table(result)
    )
    assert markdown_table(result).splitlines()[2].endswith("| 1 |")
    with pytest.raises(LiftError, match=r"cuts at 4 tokens; --max-tokens 8 cannot be applied"):
        run_evaluator("long-retrieval", _WordCut(), {**cfg, "max_tokens": 8}, ctx=EvalContext(**CTX))
    _standin(monkeypatch, _WordCut())
    code, out, _ = _eval(capsys, "long-retrieval", "--format", "urban1k", "--annotations", str(root),
                         "--images", str(root / "image"), "--max-tokens", "4")  # fmt: skip
    assert code == 0 and "captions cut at 4 tokens: 1 of 3" in out
    code, _, err = _eval(capsys, "long-retrieval", "--format", "urban1k", "--annotations", str(root),
                         "--images", str(root / "image"), "--max-tokens", "1")  # fmt: skip
    assert code == 2 and "argument --max-tokens: must be an integer >= 2, got 1" in err


def test_long_retrieval_bad_input_before_any_model(tmp_path, monkeypatch, capsys):
    root = _urban1k(tmp_path / "Urban1k", "png")
    (root / "image" / "green.png").unlink()
    _no_model(monkeypatch)
    code, _, err = _eval(capsys, "long-retrieval", "--format", "urban1k", "--annotations", str(root),
                         "--images", str(root / "image"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and f"{root / 'image' / 'green.jpg'}: image not found" in err
    code, _, err = _eval(capsys, "long-retrieval", "--annotations", str(root), "--images", str(root))
    assert code == 2 and "the following arguments are required: --format" in err
    code, _, err = _eval(capsys, "long-retrieval", "--format", "urban1k", "--annotations", str(tmp_path / "x"),
                         "--images", str(root))  # fmt: skip
    assert code == 2 and f"--annotations {tmp_path / 'x'}: not found" in err


# ---------------------------------------------------------------- real checkpoints: the text side's length


def _long_captions(root: Path) -> Path:
    captions = ["a red " + "very " * 20 + "bright scene", "a green scene", "a blue and green scene"]
    for (colour, _), caption in zip(LONG, captions):
        solid(root / "image" / f"{colour}.png", colour, size=64)
        (root / "caption").mkdir(parents=True, exist_ok=True)
        (root / "caption" / f"{colour}.txt").write_text(caption)
    return root


def _checkpoint(root: Path, method: str, **meta) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(method=method, model="vit-tiny", embed_dim=384 if method == "lift" else 32,
                      text_context_length=16 if method == "clip" else 77)  # fmt: skip
    save_checkpoint(root / "run", 1, create_model(cfg).state_dict(), {"model": config_to_dict(cfg), **meta})
    return root / "run"


def test_a_lift_checkpoint_counts_with_its_frozen_encoder_and_re_embeds_at_another_length(tmp_path):
    from lift import load
    from lift.text import TextEncoder

    encoder = TextEncoder.from_pretrained("default")
    run = _checkpoint(tmp_path, "lift", text_identity=encoder.identity, text_encoder_path=str(encoder.path))
    root = _long_captions(tmp_path / "u")
    cfg = {"format": "urban1k", "annotations": str(root), "images": str(root / "image")}
    model = load(run)
    captions = [(root / "caption" / f"{c}.txt").read_text() for c, _ in LONG]
    cut = {n: int(TextEncoder.from_pretrained("default", max_tokens=n).tokenize_and_count(captions)[1].sum())
           for n in (6, 77)}  # fmt: skip
    assert cut == {6: 2, 77: 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # at the recorded length: no warning
        own = run_evaluator("long-retrieval", model, cfg, ctx=EvalContext(**CTX))
    assert own.metrics["truncated"] == 0 and own.notes["max_tokens"] == 77
    identity = model.text_identity
    with pytest.warns(TextLengthWarning, match=r"cut at 77 tokens; embedding these at 6 tokens"):
        short = run_evaluator("long-retrieval", model, {**cfg, "max_tokens": 6}, ctx=EvalContext(**CTX))
    assert short.metrics["truncated"] == 2 and short.notes["max_tokens"] == 6
    assert model.text_identity == identity and model.open_text_encoder().max_tokens == 77  # restored
    expected = model.model.encode_text(
        TextEncoder.from_pretrained("default", max_tokens=6).encode(captions).float(), normalize=True
    )
    with pytest.warns(TextLengthWarning):
        from lift.evaluate.long_retrieval import text_side

        with text_side(model, 6):
            assert torch.allclose(model.encode_text(captions), expected, atol=1e-5)
    with pytest.raises(LiftError, match=r"--max-tokens 100000 is beyond this model's limit of 512 tokens"):
        run_evaluator("long-retrieval", model, {**cfg, "max_tokens": 100000}, ctx=EvalContext(**CTX))


def test_a_clip_checkpoint_counts_with_its_bpe_context_and_refuses_another_length(tmp_path, capsys):
    run = _checkpoint(tmp_path, "clip")
    root = _long_captions(tmp_path / "u")
    argv = ["eval", "long-retrieval", "--checkpoint", str(run), "--format", "urban1k", "--annotations", str(root),
            "--images", str(root / "image"), "--no-cache", "--workers", "0", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["metrics"]["truncated"] == 1.0  # only the first caption has more than 16 - 2 tokens
    assert "captions cut at 16 tokens: 1 of 3" in out
    assert main([*argv, "--max-tokens", "77"]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "a CLIP model's text tower has 16 positions; omit --max-tokens or give 16" in err
    )


def test_compare_takes_a_new_evaluators_results(tmp_path, capsys):
    root = _urban1k(tmp_path / "Urban1k", "png")
    cfg = {"format": "urban1k", "annotations": str(root), "images": str(root / "image")}
    a = run_evaluator("long-retrieval", _WordCut(), cfg, ctx=EvalContext(**CTX))
    b = run_evaluator("long-retrieval", StandIn(), cfg, ctx=EvalContext(policy=ErrorPolicy("skip"), **CTX))
    table = compare_table(a, b)
    assert "| Δ | +0.0 | +0.0 | +0.0 | +0.0 | +0.0 | +0.0 | – |" in table
