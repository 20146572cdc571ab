"""Winoground and MMVP-VLM evaluators on hand-computed fixtures written in the published layouts.

The stand-in model (eval_standin.py) embeds a solid image as its RGB direction and a caption as the
sum of its colour words, so every similarity below is computed by hand (and ties are exact).
"""

import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

import lift
from eval_standin import StandIn
from lift.cli import main
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import EVALUATORS, EvalContext, run_evaluator
from lift.evaluate.results import markdown_table

RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "purple": (255, 0, 255),
       "white": (255, 255, 255)}  # fmt: skip


def _png(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), RGB[colour]).save(path)


def _ctx(policy: str = "stop") -> EvalContext:
    return EvalContext(progress=False, policy=ErrorPolicy(policy))


# ---------------------------------------------------------------- Winoground

# (image 0, image 1, caption 0, caption 1, tag, secondary_tag) and the hand-computed (text, image, group):
# 0: s = [[1, 0], [0, 1]]                                                   -> all right
# 1: i1 green: s(c1, i1) = s(c0, i1) = 0 and s(c1, i1) = s(c1, i0) = 0, ties -> text and image wrong
# 2: s(c0,i0) = 2/sqrt5 = .894, s(c1,i0) = .707, s(c1,i1) = 1, s(c0,i1) = 3/sqrt10 = .949
#    text: .894 > .707 and 1 > .949; image: .894 > .949 fails           -> text only
# 3: i0 purple, i1 white: s(c0,i0) = .707, s(c0,i1) = .577, s(c1,i0) = .816, s(c1,i1) = 1
#    image: .707 > .577 and 1 > .816; text: .707 > .816 fails           -> image only
WINO = [
    ("red", "blue", "red", "blue", "Object", "", (True, True, True)),
    ("red", "green", "red", "blue", "Relation", "Symbolic", (False, False, False)),
    ("red", "purple", "red red blue", "red blue", "Relation", "", (True, False, False)),
    ("purple", "white", "red", "red blue green", "Both", "Symbolic, Series", (False, True, False)),
]


def _winoground(root: Path, rows=WINO, extra: list[dict] | None = None) -> Path:
    lines = []
    for k, (i0, i1, c0, c1, tag, secondary, _) in enumerate(rows):
        _png(root / "images" / f"ex_{k}_img_0.png", i0)
        _png(root / "images" / f"ex_{k}_img_1.png", i1)
        # the release names images without their extension; a name with one is read too
        name1 = f"ex_{k}_img_1.png" if k % 2 else f"ex_{k}_img_1"
        lines.append({"id": k, "image_0": f"ex_{k}_img_0", "image_1": name1, "caption_0": c0,
                      "caption_1": c1, "tag": tag, "secondary_tag": secondary, "num_main_preds": 1,
                      "collapsed_tag": tag})  # fmt: skip
    lines += extra or []
    (root / "examples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def _expected(rows) -> dict[str, float]:
    return {
        s: 100.0 * sum(r[6][k] for r in rows) / len(rows) for k, s in enumerate(("text", "image", "group"))
    }


def test_winoground_scores_are_the_official_strict_ones_overall_and_per_tag(tmp_path):
    root = _winoground(tmp_path / "wino")
    model = StandIn()
    result = run_evaluator("winoground", model, {"annotations": str(root / "examples.jsonl")}, ctx=_ctx())
    m = result.metrics
    assert (m["text"], m["image"], m["group"]) == (50.0, 50.0, 25.0) == tuple(_expected(WINO).values())
    assert (m["tag=Object/text"], m["tag=Object/image"], m["tag=Object/group"]) == (100.0, 100.0, 100.0)
    assert (m["tag=Relation/text"], m["tag=Relation/image"], m["tag=Relation/group"]) == (50.0, 0.0, 0.0)
    assert (m["tag=Both/text"], m["tag=Both/image"], m["tag=Both/group"]) == (0.0, 100.0, 0.0)
    # secondary tags, comma-separated values each counted
    assert (m["secondary_tag=Symbolic/text"], m["secondary_tag=Symbolic/image"]) == (0.0, 50.0)
    assert (m["secondary_tag=Series/text"], m["secondary_tag=Series/image"]) == (0.0, 100.0)
    assert result.counts["examples"] == {"n": 4, "skipped": 0}
    assert result.counts["tag=Relation/examples"] == {"n": 2, "skipped": 0}
    assert not any(k.startswith("heldout") for k in m)  # no heldout.json beside the file
    # batched: each distinct image and caption embedded once
    assert model.images_encoded == 8 and model.texts_encoded == len({c for r in WINO for c in r[2:4]})
    table = markdown_table(result)
    assert "| standin model | 50.0 | 50.0 | 25.0 |" in table
    assert "| standin model (tag=Both) | 0.0 | 100.0 | 0.0 |" in table


def test_winoground_folder_default_images_and_heldout_ids(tmp_path):
    root = _winoground(tmp_path / "wino")
    (root / "heldout.json").write_text(json.dumps({"ids": [2, 3]}))
    result = run_evaluator("winoground", StandIn(), {"annotations": str(root)}, ctx=_ctx())
    assert result.metrics["heldout/text"] == 50.0 and result.metrics["heldout/image"] == 50.0
    assert result.counts["heldout/examples"] == {"n": 2, "skipped": 0}


@pytest.mark.parametrize(
    "line, message",
    [
        ({"id": 9, "image_0": "ex_0_img_0", "image_1": "ex_0_img_1", "caption_0": "red", "caption_1": "blue"},
         "line 5: missing field(s) ['tag']"),
        ({"id": 9, "image_0": "ex_0_img_0", "image_1": "nowhere", "caption_0": "red", "caption_1": "blue",
          "tag": "Object"}, "line 5: image(s) ['nowhere'] not found in"),
        ({"id": 9, "image_0": "ex_0_img_0", "image_1": "ex_0_img_1", "caption_0": "red", "caption_1": " ",
          "tag": "Object"}, "line 5: caption_1: empty caption"),
        ({"id": 0, "image_0": "ex_0_img_0", "image_1": "ex_0_img_1", "caption_0": "red", "caption_1": "blue",
          "tag": "Object"}, "line 5: id 0 appears twice"),
    ],
)  # fmt: skip
def test_winoground_bad_input_is_one_line_before_the_model_runs(tmp_path, line, message):
    root = _winoground(tmp_path / "wino", extra=[line])
    model = StandIn()
    with pytest.raises(LiftError, match=re.escape(message)) as err:
        run_evaluator("winoground", model, {"annotations": str(root)}, ctx=_ctx())
    assert "\n" not in str(err.value) and "examples.jsonl" in str(err.value)
    assert model.text_calls == model.image_calls == 0


def test_winoground_skip_counts_beside_each_metric(tmp_path):
    extra = [
        {"id": 8, "image_0": "ex_0_img_0", "image_1": "gone", "caption_0": "red", "caption_1": "blue",
         "tag": "Object", "secondary_tag": "Symbolic"},
        {"id": 9, "caption_0": "red"},
    ]  # fmt: skip
    root = _winoground(tmp_path / "wino", extra=extra)
    (root / "examples.jsonl").write_text((root / "examples.jsonl").read_text() + "not json\n")
    ctx = _ctx("skip")
    result = run_evaluator("winoground", StandIn(), {"annotations": str(root)}, ctx=ctx)
    assert result.metrics["text"] == 50.0  # the same four examples scored
    assert result.counts["examples"] == {"n": 4, "skipped": 3}
    assert result.counts["tag=Object/examples"] == {"n": 1, "skipped": 1}
    assert result.counts["secondary_tag=Symbolic/examples"] == {"n": 2, "skipped": 1}
    assert ctx.policy.skipped == 3
    table = markdown_table(result)
    assert (
        "| standin model | 50.0 (n=4, skipped=3) | 50.0 (n=4, skipped=3) | 25.0 (n=4, skipped=3) |" in table
    )
    assert "| standin model (tag=Object) | 100.0 (n=1, skipped=1) |" in table


def test_winoground_missing_file_or_folder_is_one_line(tmp_path):
    with pytest.raises(LiftError, match="examples.jsonl: Winoground examples file not found"):
        run_evaluator("winoground", StandIn(), {"annotations": str(tmp_path)}, ctx=_ctx())
    root = _winoground(tmp_path / "wino")
    with pytest.raises(LiftError, match="elsewhere: (image )?folder not found"):
        cfg = {"annotations": str(root), "images": str(tmp_path / "elsewhere")}
        run_evaluator("winoground", StandIn(), cfg, ctx=_ctx())


# ---------------------------------------------------------------- MMVP-VLM

# (Type, statement 1, statement 2, image 1, image 2): pair right iff statement 1 picks image 1 and
# statement 2 picks image 2; "picks image 1" iff s(t, i1) > s(t, i2), so a tie picks image 2.
MMVP = [
    ("Color", "red", "blue", "red", "blue"),  # right
    ("Color", "blue", "green", "red", "green"),  # statement 1 ties (0 = 0): picks image 2 -> wrong
    ("Count", "red", "blue", "red", "green"),  # statement 2 ties (0 = 0): picks image 2 -> right
    ("Count", "blue", "blue", "red", "blue"),  # statement 1 picks image 2 -> wrong
    ("Size", "red", "red", "red", "blue"),  # statement 2 picks image 1 -> wrong
]


def _mmvp(root: Path, pairs=MMVP, rows: list[str] | None = None) -> Path:
    lines = ["Question ID,Type,Statement"]
    for k, (pattern, s1, s2, i1, i2) in enumerate(pairs):
        q1, q2 = 2 * k + 1, 2 * k + 2
        _png(root / "MLLM_VLM Images" / pattern / f"{q1}.png", i1)
        _png(root / "MLLM_VLM Images" / pattern / f"{q2}.png", i2)
        lines += [f"{q1},{pattern},{s1}", f"{q2},{pattern},{s2}"]
    (root / "Questions.csv").write_text("\n".join(rows if rows is not None else lines) + "\n")
    return root


def test_mmvp_pair_accuracy_per_pattern_and_average_with_the_official_tie_rule(tmp_path):
    root = _mmvp(tmp_path / "mmvp")
    model = StandIn()
    result = run_evaluator("mmvp", model, {"annotations": str(root / "Questions.csv")}, ctx=_ctx())
    m = result.metrics
    assert m["pattern=Color/accuracy"] == 50.0 and m["pattern=Count/accuracy"] == 50.0
    assert m["pattern=Size/accuracy"] == 0.0
    assert math.isclose(m["accuracy"], 100 / 3)  # the average of the patterns (pooled would be 40)
    assert result.counts["pairs"] == {"n": 5, "skipped": 0}
    assert result.counts["pattern=Color/pairs"] == {"n": 2, "skipped": 0}
    assert result.notes["patterns"] == ["Color", "Count", "Size"]
    # "a photo of " before each statement, as the official script does; each text embedded once
    assert model.texts_encoded == 3  # "a photo of red/blue/green"
    assert model.images_encoded == 10
    assert "| standin model (pattern=Size) | 0.0 |" in markdown_table(result)


def test_mmvp_reads_jpg_images_by_question_id(tmp_path):
    root = tmp_path / "mmvp"
    for qid, colour in ((1, "red"), (2, "blue")):
        (root / "MLLM_VLM Images" / "Color").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), RGB[colour]).save(root / "MLLM_VLM Images" / "Color" / f"{qid}.jpg")
    (root / "Questions.csv").write_text("Question ID,Type,Statement\n1,Color,red\n2,Color,blue\n")
    result = run_evaluator("mmvp", StandIn(), {"annotations": str(root)}, ctx=_ctx())
    assert result.metrics == {"accuracy": 100.0, "pattern=Color/accuracy": 100.0}


@pytest.mark.parametrize(
    "rows, message",
    [
        (["Question ID,Type", "1,Color"], r"missing column\(s\) \['Statement'\]"),
        (["Question ID,Type,Statement", "1,Color,red", "2,Color,blue", "3,Color,red"],
         "line 4: the last row has no partner"),
        (["Question ID,Type,Statement", "2,Color,red", "1,Color,blue"],
         "line 2: Question IDs 2 and 1 are not a pair"),
        (["Question ID,Type,Statement", "1,Color,red", "2,Size,blue"],
         "line 2: the pair's rows have different Types"),
        (["Question ID,Type,Statement", "1,Color,red", "x,Color,blue"],
         "line 3: 'Question ID' 'x' is not a number"),
        (["Question ID,Type,Statement", "1,Color,red", "2,Color,"], "line 3: 'Statement': empty caption"),
        (["Question ID,Type,Statement", "1,Color,red", "2,Color,blue", "3,Count,red", "4,Count,blue"],
         r"line 4: no image for Question ID\(s\) \[3, 4\]"),
    ],
)  # fmt: skip
def test_mmvp_bad_input_is_one_line_before_the_model_runs(tmp_path, rows, message):
    root = _mmvp(tmp_path / "mmvp", pairs=MMVP[:1], rows=rows)
    model = StandIn()
    with pytest.raises(LiftError, match=message) as err:
        run_evaluator("mmvp", model, {"annotations": str(root)}, ctx=_ctx())
    assert "\n" not in str(err.value) and "Questions.csv" in str(err.value)
    assert model.text_calls == model.image_calls == 0


def test_mmvp_skip_counts_beside_each_metric(tmp_path):
    root = _mmvp(tmp_path / "mmvp")
    (root / "MLLM_VLM Images" / "Count" / "8.png").unlink()  # the second Count pair loses an image
    with open(root / "Questions.csv", "a") as f:
        f.write("11,Size,red\n")  # a row without its partner
    ctx = _ctx("skip")
    result = run_evaluator("mmvp", StandIn(), {"annotations": str(root)}, ctx=ctx)
    assert result.metrics["pattern=Count/accuracy"] == 100.0
    assert result.counts["pattern=Count/pairs"] == {"n": 1, "skipped": 1}
    assert result.counts["pairs"] == {"n": 4, "skipped": 2} and ctx.policy.skipped == 2
    table = markdown_table(result)
    assert "| standin model (pattern=Count) | 100.0 (n=1, skipped=1) |" in table


# ---------------------------------------------------------------- registry and CLI


def test_both_are_registered_built_ins_with_help():
    for name in ("winoground", "mmvp"):
        assert name in EVALUATORS.names() and EVALUATORS.help(name)


def _cli(capsys, monkeypatch, task: str, root: Path, *extra: str) -> tuple[int, str, str]:
    monkeypatch.setattr(lift, "load", lambda *a, **k: StandIn())
    argv = ["eval", task, "--checkpoint", "standin", "--no-cache", "--no-progress", "--workers", "0",
            "--json", "--annotations", str(root), *extra]  # fmt: skip
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("task, make", [("winoground", _winoground), ("mmvp", _mmvp)])
def test_cli_prints_the_table_and_the_same_numbers_as_the_library(tmp_path, capsys, monkeypatch, task, make):
    root = make(tmp_path / task)
    code, out, _ = _cli(capsys, monkeypatch, task, root)
    assert code == 0
    printed = json.loads(out.strip().splitlines()[-1])
    expected = run_evaluator(task, StandIn(), {"annotations": str(root)}, ctx=_ctx())
    assert printed["metrics"] == expected.metrics and printed["counts"] == expected.counts
    assert "| standin standin |" in out  # the table: method and checkpoint name


def test_cli_missing_image_is_one_line_and_skip_counts_it(tmp_path, capsys, monkeypatch):
    extra = [{"id": 8, "image_0": "ex_0_img_0", "image_1": "gone", "caption_0": "red", "caption_1": "blue",
              "tag": "Object"}]  # fmt: skip
    root = _winoground(tmp_path / "wino", extra=extra)
    code, out, err = _cli(capsys, monkeypatch, "winoground", root)
    assert code == 2 and err.strip().count("\n") == 0 and "image(s) ['gone'] not found" in err
    code, out, _ = _cli(capsys, monkeypatch, "winoground", root, "--on-error", "skip")
    assert code == 0 and "50.0 (n=4, skipped=1)" in out
    assert json.loads(out.strip().splitlines()[-1])["counts"]["examples"] == {"n": 4, "skipped": 1}
