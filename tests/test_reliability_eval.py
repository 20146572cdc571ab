"""Issue 15, evaluation side: flags out of range are refused while parsing (item 3), unusable captions
and Pillow-readable images are neither used silently nor dropped silently (item 11), outputs are
checked before any work and bad files get one line (item 12), and the text encoder is found the way
train and embed find it: "default", absolute paths, moved folders with the same weights (item 13)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from eval_standin import StandIn, solid
from lift.checkpoint import save_checkpoint
from lift.cli import main
from lift.config import config_to_dict
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import EvalContext, run_evaluator
from lift.evaluate.formats import read_coco_captions, read_flickr_csv, read_imagefolder
from lift.evaluate.results import SUGARCREPE_SUBSETS
from lift.identity import EncoderRenamedWarning
from lift.models import ModelConfig, create_model
from lift.text import TextEncoder
from lift.text.default import default_encoder_path, resolve_encoder_path


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lift-cache"))


@pytest.fixture(scope="module")
def default_identity() -> dict:
    return TextEncoder.from_pretrained("default", device="cpu").identity


def _sugarcrepe(root: Path) -> list[str]:
    for c in ("red", "green"):
        solid(root / "img" / f"{c}.png", c, size=64)
    rows = {"0": {"filename": "red.png", "caption": "a red thing", "negative_caption": "a green thing"},
            "1": {"filename": "green.png", "caption": "green", "negative_caption": "red"}}  # fmt: skip
    (root / "ann").mkdir(parents=True, exist_ok=True)
    for s in SUGARCREPE_SUBSETS:
        (root / "ann" / f"{s}.json").write_text(json.dumps(rows))
    return ["--annotations", str(root / "ann"), "--images", str(root / "img"), "--no-cache", "--workers", "0",
            "--no-progress", "--device", "cpu"]  # fmt: skip


def _run(root: Path, method: str, **meta) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(method=method, model="vit-tiny", embed_dim=384 if method == "lift" else 32)
    save_checkpoint(root / "run", 1, create_model(cfg).state_dict(), {"model": config_to_dict(cfg), **meta})
    return root / "run"


# ---------------------------------------------------------------- item 3: numeric flags


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [("--batch-size", "0", ">= 1, got 0"), ("--batch-size", "-3", ">= 1, got -3"), ("--workers", "-1", ">= 0, got -1"),
     ("--vision-heads", "0", ">= 1, got 0"), ("--max-tokens", "1", ">= 2, got 1"), ("--batch-size", "x", ">= 1, got 'x'")],
)  # fmt: skip
def test_out_of_range_numeric_flags_are_refused_naming_flag_and_range(tmp_path, capsys, flag, value, rule):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "sugarcrepe", "--checkpoint", "run", *_sugarcrepe(tmp_path), flag, value])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}: must be an integer {rule}" in last


# ---------------------------------------------------------------- item 12: outputs before any work


def test_eval_out_is_checked_before_the_evaluation_runs(tmp_path, capsys, monkeypatch):
    args = ["eval", "sugarcrepe", "--checkpoint", str(_run(tmp_path, "clip")), *_sugarcrepe(tmp_path)]
    import lift.evaluate

    real = lift.evaluate.evaluate_checkpoint
    monkeypatch.setattr(lift.evaluate, "evaluate_checkpoint", lambda *a, **k: pytest.fail("evaluated first"))
    folder = tmp_path / "results"
    folder.mkdir()
    assert main([*args, "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {folder}: is a folder; give a file path" in err
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    assert main([*args, "--out", str(notes)]) == 2
    assert "exists and is not a lift eval result JSON" in capsys.readouterr().err
    assert notes.read_text() == '{"mine": true}'
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main([*args, "--out", str(blocker / "r.json")]) == 2
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err

    monkeypatch.setattr(lift.evaluate, "evaluate_checkpoint", real)
    result = tmp_path / "r.json"
    assert main([*args, "--out", str(result)]) == 0
    assert main([*args, "--out", str(result)]) == 0  # an earlier result may be replaced
    assert json.loads(result.read_text())["task"] == "sugarcrepe"


def _flickr_rows(rows: list[str]) -> bytes:
    return ("raw,split,filename\n" + "".join(rows)).encode()


def test_a_flickr_csv_that_is_not_utf8_is_one_line_naming_line_and_byte(tmp_path, capsys):
    path = tmp_path / "flickr_annotations_30k.csv"
    good = '"[""A dog.""]",test,1.jpg\n'
    path.write_bytes(_flickr_rows([good]) + '"[""Un caf\xe9.""]",test,2.jpg\n'.encode("latin-1"))
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(LiftError, match=rf"flickr_annotations_30k\.csv: not UTF-8 at line 3, byte {offset} "):
        read_flickr_csv(path, tmp_path, "test", ErrorPolicy())
    run = _run(tmp_path, "clip")
    code = main(["eval", "retrieval", "--checkpoint", str(run), "--images", str(tmp_path), "--annotations",
                 str(path), "--no-cache", "--workers", "0", "--no-progress", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not UTF-8 at line 3" in err
    path.write_bytes(b"\xef\xbb\xbf" + _flickr_rows([good]))  # a BOM is UTF-8
    assert read_flickr_csv(path, tmp_path, "test", ErrorPolicy()).captions == [["A dog."]]


# ---------------------------------------------------------------- item 11: nothing used or dropped silently


def test_empty_coco_captions_are_not_queries(tmp_path):
    for c in ("red", "green"):
        solid(tmp_path / "img" / f"{c}.png", c)
    ann = tmp_path / "captions.json"
    ann.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "red.png"}, {"id": 2, "file_name": "green.png"}],
        "annotations": [{"image_id": 1, "caption": "red"}, {"image_id": 2, "caption": "   "},
                        {"image_id": 2, "caption": "green"}, {"image_id": 1, "caption": None}],
    }))  # fmt: skip
    with pytest.raises(LiftError, match=r"captions\.json: annotations\[1\]: empty caption"):
        read_coco_captions(ann, tmp_path / "img", ErrorPolicy())
    policy = ErrorPolicy("skip")
    data = read_coco_captions(ann, tmp_path / "img", policy)
    assert data.captions == [["red"], ["green"]] and policy.skipped == 2
    assert any("annotations[3]: missing caption" in e for e in policy.examples)
    cfg = {"images": str(tmp_path / "img"), "annotations": str(ann), "protocol": "all-captions"}
    result = run_evaluator(
        "retrieval", StandIn(), cfg, ctx=EvalContext(progress=False, policy=ErrorPolicy("skip"))
    )
    assert result.counts["texts"] == {"n": 2, "skipped": 2} and result.counts["images"] == {
        "n": 2,
        "skipped": 0,
    }
    assert result.metrics["t2i_R@1"] == 100.0


def test_empty_flickr_captions_are_not_queries(tmp_path):
    path = tmp_path / "flickr.csv"
    path.write_bytes(_flickr_rows(['"[""A dog."", """"]",test,1.jpg\n', '"[""  ""]",test,2.jpg\n']))
    with pytest.raises(LiftError, match=r"flickr\.csv: line 2: caption 1: empty caption"):
        read_flickr_csv(path, tmp_path, "test", ErrorPolicy())
    policy = ErrorPolicy("skip")
    data = read_flickr_csv(path, tmp_path, "test", policy)
    assert data.captions == [["A dog."]] and data.skipped_captions == 2 and policy.skipped == 3


def test_zero_shot_reads_every_image_pillow_decodes(tmp_path):
    solid(tmp_path / "red" / "a.png", "red")
    solid(tmp_path / "red" / "b.gif", "red")  # not in torchvision's IMG_EXTENSIONS
    solid(tmp_path / "red" / "c.v2.png", "red")  # webdataset key c, extension v2.png
    solid(tmp_path / "green" / "d.tiff", "green")
    solid(tmp_path / "green" / "e.webp", "green")
    (tmp_path / "green" / "notes.txt").write_text("not an image")
    solid(tmp_path / "green" / "._e.png", "red")  # macOS metadata, hidden
    data = read_imagefolder(tmp_path, None, ErrorPolicy())
    assert sorted(p.name for p, _ in data.samples) == ["a.png", "b.gif", "c.v2.png", "d.tiff", "e.webp"]
    result = run_evaluator("zeroshot", StandIn(), {"images": str(tmp_path)}, ctx=EvalContext(progress=False))
    assert result.counts["images"] == {"n": 5, "skipped": 0} and result.metrics["top1"] == 100.0


# ---------------------------------------------------------------- item 13: finding the text encoder


def test_eval_text_encoder_default_replaces_a_gone_folder(tmp_path, capsys, default_identity):
    gone = tmp_path / "gone" / default_identity["name"]
    run = _run(tmp_path, "lift", text_identity=default_identity, text_encoder_path=str(gone))
    args = ["eval", "sugarcrepe", "--checkpoint", str(run), *_sugarcrepe(tmp_path), "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--text-encoder FOLDER (lift eval) or text_encoder= (lift.load)" in err
    assert main([*args, "--text-encoder", "default"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["text_encoder"] == default_identity


def test_a_renamed_encoder_folder_with_the_same_weights_is_a_warning(tmp_path, capsys, default_identity):
    renamed = {**default_identity, "name": "all-MiniLM-L6-v2-before-the-move"}
    run = _run(tmp_path, "lift", text_identity=renamed, text_encoder_path=str(tmp_path / "gone"))
    args = [
        "eval",
        "sugarcrepe",
        "--checkpoint",
        str(run),
        *_sugarcrepe(tmp_path),
        "--text-encoder",
        "default",
    ]
    assert main(args) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    assert len(warned) == 1 and warned[0].startswith("lift eval: warning: text encoder folder names differ")
    assert "all-MiniLM-L6-v2-before-the-move" in warned[0] and "the weights are the same" in warned[0]
    other = {**renamed, "weights_sha256": "0" * 64}
    run = _run(tmp_path / "other", "lift", text_identity=other, text_encoder_path=str(tmp_path / "gone"))
    args[3] = str(run)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "text encoder mismatch" in err and "weights_sha256" in err


def test_embed_records_an_absolute_encoder_path_that_works_from_anywhere(tmp_path, monkeypatch):
    from lift.embed import embed_captions
    from lift.store import open_store

    here = tmp_path / "project"
    (here / "models").mkdir(parents=True)
    (here / "models" / "minilm").symlink_to(default_encoder_path())
    pq.write_table(
        pa.table({"key": ["a", "b"], "caption": ["a red cube", "a blue ball"]}), here / "caps.parquet"
    )
    monkeypatch.chdir(here)
    assert resolve_encoder_path("models/minilm") == here / "models" / "minilm"
    assert resolve_encoder_path("models/../models/minilm") == here / "models" / "minilm"
    embed_captions(
        sources=["caps.parquet"], out="store", text_encoder="models/minilm", batch_size=8, progress=False
    )
    recorded = open_store(here / "store").manifest["extra"]["text_encoder_path"]
    assert os.path.isabs(recorded) and Path(recorded).samefile(here / "models" / "minilm")
    monkeypatch.chdir(tmp_path)  # another directory: the recorded path still names the folder
    store = open_store(here / "store")
    with warnings.catch_warnings():  # embed may record the folder's real path (a symlink's target)
        warnings.simplefilter("ignore", EncoderRenamedWarning)
        assert (
            TextEncoder.from_identity(store.identity, recorded).weights_sha256
            == store.identity["weights_sha256"]
        )
