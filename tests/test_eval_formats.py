"""Each benchmark layout parsed from fixtures written in the official format; bad input errors or is counted."""

import csv
import json

import pytest

from eval_standin import StandIn, solid
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import EvalContext, run_evaluator
from lift.evaluate.formats import (
    read_classnames,
    read_coco_captions,
    read_flickr_csv,
    read_imagefolder,
    read_sugarcrepe_file,
    read_templates,
)

SUBSETS = ("add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")


def test_sugarcrepe_official_layout(tmp_path):
    path = tmp_path / "replace_rel.json"
    path.write_text(json.dumps({
        "0": {"filename": "000000397133.jpg", "caption": "A man is in a kitchen making pizzas.",
              "negative_caption": "A man is outside a kitchen making pizzas."},
        "1": {"filename": "000000037777.jpg", "caption": "a kitchen with a counter",
              "negative_caption": "a kitchen under a counter"},
    }))  # fmt: skip
    items = read_sugarcrepe_file(path, ErrorPolicy())
    assert [it.id for it in items] == ["0", "1"]
    assert (
        items[0].filename == "000000397133.jpg" and items[1].negative_caption == "a kitchen under a counter"
    )


def test_sugarcrepe_missing_key_names_file_and_item(tmp_path):
    path = tmp_path / "add_obj.json"
    path.write_text(json.dumps({"0": {"filename": "a.png", "caption": "x", "negative_caption": "y"},
                                "1": {"filename": "b.png", "caption": "x"}}))  # fmt: skip
    with pytest.raises(LiftError, match=r"add_obj\.json: item '1': missing key\(s\) \['negative_caption'\]"):
        read_sugarcrepe_file(path, ErrorPolicy())
    policy = ErrorPolicy("skip")
    assert len(read_sugarcrepe_file(path, policy)) == 1 and policy.skipped == 1


def _write_subsets(ann, rows):
    ann.mkdir(parents=True, exist_ok=True)
    for s in SUBSETS:
        data = {
            str(i): {"filename": f, "caption": p, "negative_caption": n} for i, (f, p, n) in enumerate(rows)
        }
        (ann / f"{s}.json").write_text(json.dumps(data))


def test_sugarcrepe_missing_image_stops_or_is_counted_beside_the_metric(tmp_path):
    solid(tmp_path / "img" / "red.png", "red")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    rows = [("red.png", "red", "blue"), ("gone.png", "red", "blue"), ("broken.png", "green", "red")]
    _write_subsets(tmp_path / "ann", rows)
    cfg = {"annotations": str(tmp_path / "ann"), "images": str(tmp_path / "img")}
    with pytest.raises(LiftError, match=r"gone\.png: image not found|broken\.png: unreadable image"):
        run_evaluator("sugarcrepe", StandIn(), cfg, ctx=EvalContext(progress=False))
    ctx = EvalContext(progress=False, policy=ErrorPolicy("skip"))
    result = run_evaluator("sugarcrepe", StandIn(), cfg, ctx=ctx)
    assert ctx.policy.skipped == 2  # two distinct bad images, each reported once
    for s in SUBSETS:
        assert result.counts[s] == {"n": 1, "skipped": 2}
        assert result.metrics[s] == 100.0
    from lift.evaluate.results import markdown_table

    assert "100.0 (n=1, skipped=2)" in markdown_table(result)
    assert "100.0 (n=7, skipped=14)" in markdown_table(result)  # the mean says what it covers


def test_sugarcrepe_missing_subset_file(tmp_path):
    _write_subsets(tmp_path / "ann", [("a.png", "x", "y")])
    (tmp_path / "ann" / "swap_att.json").unlink()
    with pytest.raises(LiftError, match=r"swap_att\.json: SugarCrepe file not found"):
        run_evaluator(
            "sugarcrepe", StandIn(), {"annotations": str(tmp_path / "ann"), "images": str(tmp_path)}
        )


def test_imagefolder_with_txt_and_imagenet_index(tmp_path):
    root = tmp_path / "val"
    for wnid in ("n01443537", "n01440764"):
        solid(root / wnid / "ILSVRC2012_val_00000001.JPEG", "red")
    (root / "n01440764" / "notes.txt").write_text("not an image")
    index = tmp_path / "imagenet_class_index.json"
    index.write_text(
        json.dumps(
            {"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"], "2": ["n0", "great_white_shark"]}
        )
    )
    data = read_imagefolder(root, index, ErrorPolicy())
    assert data.folders == ["n01440764", "n01443537"] and data.classnames == ["tench", "goldfish"]
    assert [(p.parent.name, y) for p, y in data.samples] == [("n01440764", 0), ("n01443537", 1)]
    names = tmp_path / "classnames.txt"
    names.write_text("tench\ngoldfish\n")
    assert read_classnames(names, data.folders) == ["tench", "goldfish"]
    names.write_text("tench\n")
    with pytest.raises(LiftError, match="1 class names for 2 class folders"):
        read_classnames(names, data.folders)
    index.write_text(json.dumps({"0": ["n01440764", "tench"]}))
    with pytest.raises(LiftError, match=r"no class name for folder\(s\) \['n01443537'\]"):
        read_classnames(index, data.folders)


def test_empty_class_folder_errors_or_is_counted(tmp_path):
    root = tmp_path / "val"
    solid(root / "red" / "a.png", "red")
    (root / "blue").mkdir()
    with pytest.raises(LiftError, match=r"blue: class folder has no images"):
        read_imagefolder(root, None, ErrorPolicy())
    ctx = EvalContext(progress=False, policy=ErrorPolicy("skip"))
    result = run_evaluator("zeroshot", StandIn(), {"images": str(root)}, ctx=ctx)
    assert result.counts["classes"] == {"n": 1, "skipped": 1} and result.metrics["top1"] == 100.0


def test_templates_file(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("a photo of a {label}.\n\na {} in the wild\n")
    assert read_templates(path) == ["a photo of a {label}.", "a {} in the wild"]
    path.write_text("no placeholder\n")
    with pytest.raises(LiftError, match="template 0"):
        read_templates(path)


def test_coco_captions_layout(tmp_path):
    ann = tmp_path / "captions_val2017.json"
    ann.write_text(json.dumps({
        "info": {}, "licenses": [],
        "images": [{"id": 139, "file_name": "000000000139.jpg", "height": 426, "width": 640},
                   {"id": 285, "file_name": "000000000285.jpg"}],
        "annotations": [{"image_id": 285, "id": 1, "caption": "A big bear. "},
                        {"image_id": 139, "id": 2, "caption": "A room."},
                        {"image_id": 285, "id": 3, "caption": "A brown bear."}],
    }))  # fmt: skip
    data = read_coco_captions(ann, tmp_path / "val2017", ErrorPolicy())
    assert [p.name for p in data.images] == ["000000000139.jpg", "000000000285.jpg"]
    assert data.captions == [["A room."], ["A big bear.", "A brown bear."]] and data.ids == [139, 285]
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(LiftError, match="'images' and 'annotations'"):
        read_coco_captions(ann, tmp_path, ErrorPolicy())
    ann.write_text(
        json.dumps(
            {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 9, "caption": "x"}]}
        )
    )
    with pytest.raises(LiftError, match=r"annotations\[0\]: image_id 9 is not in 'images'"):
        read_coco_captions(ann, tmp_path, ErrorPolicy())


def test_flickr_csv_layout(tmp_path):
    path = tmp_path / "flickr_annotations_30k.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["raw", "sentids", "split", "filename", "img_id"])
        w.writerow([json.dumps(["Two dogs run.", "Dogs, playing"]), "[0, 1]", "train", "1000092795.jpg", 0])
        w.writerow([json.dumps(['A girl "smiles".']), "[5]", "test", "1001773457.jpg", 1])
        w.writerow(["not json", "[6]", "test", "1002.jpg", 2])
    with pytest.raises(LiftError, match="line 4: 'raw' must be a JSON list"):
        read_flickr_csv(path, tmp_path, "test", ErrorPolicy())
    policy = ErrorPolicy("skip")
    data = read_flickr_csv(path, tmp_path, "test", policy)
    assert [p.name for p in data.images] == ["1001773457.jpg"] and data.captions == [['A girl "smiles".']]
    assert policy.skipped == 1
    assert read_flickr_csv(path, tmp_path, "train", ErrorPolicy()).captions == [
        ["Two dogs run.", "Dogs, playing"]
    ]
    path.write_text("filename,split\na.jpg,test\n")
    with pytest.raises(LiftError, match=r"missing column\(s\) \['raw'\]"):
        read_flickr_csv(path, tmp_path, "test", ErrorPolicy())


def test_retrieval_end_to_end_with_a_skipped_image(tmp_path):
    for c in ("red", "green", "blue"):
        solid(tmp_path / "img" / f"{c}.png", c)
    images = [{"id": i, "file_name": f"{c}.png"} for i, c in enumerate(("red", "green", "blue", "gone"))]
    anns = [{"image_id": i, "caption": c} for i, c in enumerate(("red", "green", "blue", "red"))]
    anns.append({"image_id": 0, "caption": "green"})  # a second caption: counts only under all-captions
    (tmp_path / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}))
    cfg = {
        "images": str(tmp_path / "img"),
        "annotations": str(tmp_path / "captions.json"),
        "protocol": "all-captions",
    }
    ctx = EvalContext(progress=False, policy=ErrorPolicy("skip"))
    result = run_evaluator("retrieval", StandIn(), cfg, ctx=ctx)
    assert result.counts["images"] == {"n": 3, "skipped": 1} and result.counts["texts"] == {
        "n": 4,
        "skipped": 1,
    }
    # The green image's caption "green" ties with the red image's second caption "green": a miss.
    assert result.metrics["i2t_R@1"] == pytest.approx(200 / 3)
    assert result.metrics["i2t_R@5"] == 100.0
    # text "green" of the red image: the green image wins -> a miss; the other three are hits.
    assert result.metrics["t2i_R@1"] == 75.0


def test_reads_the_synth_worlds_three_test_splits_and_their_heldout_files(tmp_path):
    from lift.data.synth.generate import SynthConfig, generate_world

    generate_world(tmp_path, SynthConfig(train_size=0, test_size=30), progress=False,
                   splits=("sugarcrepe", "zeroshot", "retrieval"))  # fmt: skip
    ctx = EvalContext(progress=False)
    sc = run_evaluator("sugarcrepe", StandIn(), {"annotations": str(tmp_path / "sugarcrepe"),
                                                 "images": str(tmp_path / "sugarcrepe" / "images")}, ctx=ctx)  # fmt: skip
    held = json.loads((tmp_path / "sugarcrepe" / "heldout.json").read_text())
    for s in SUBSETS:
        assert sc.counts[f"heldout/{s}"]["n"] == len(held[s]) > 0
        assert sc.counts[s]["n"] == len(json.loads((tmp_path / "sugarcrepe" / f"{s}.json").read_text()))
    zs_root = tmp_path / "zeroshot"
    zs = run_evaluator("zeroshot", StandIn(), {"images": str(zs_root), "classnames": str(zs_root / "classnames.txt")},
                       ctx=ctx)  # fmt: skip
    held_folders = json.loads((zs_root / "heldout.json").read_text())["folders"]
    n_held = sum(len(list((zs_root / f).iterdir())) for f in held_folders)
    assert zs.counts["heldout/images"]["n"] == n_held and "heldout/top1" in zs.metrics
    rt = run_evaluator("retrieval", StandIn(), {"images": str(tmp_path / "retrieval" / "images"),
                       "annotations": str(tmp_path / "retrieval" / "captions.json")}, ctx=ctx)  # fmt: skip
    held_ids = json.loads((tmp_path / "retrieval" / "heldout.json").read_text())["image_ids"]
    assert rt.counts["images"]["n"] == 30 and rt.counts["heldout/images"]["n"] == len(held_ids) > 0
    assert rt.counts["heldout/texts"]["n"] == len(held_ids)  # first-caption: one caption per image
