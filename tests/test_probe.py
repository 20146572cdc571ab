"""`lift probe` (issue 17, part 2): what a frozen text encoder can teach, on text alone.

The figures are checked on hand-made vectors whose answers are known (a stub `embed`); the command
on a tiny synthetic world with the packaged default encoder, through raw and transformed stores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lift.cli import main
from lift.errors import ErrorPolicy, LiftError
from lift.probe import (
    class_prompts,
    probe_captions,
    probe_classes,
    probe_geometry,
    probe_pairs,
    probe_sugarcrepe,
    read_class_list,
)


def stub(vectors: dict[str, list[float]]):
    """An `embed` that looks each text up (unknown text: a KeyError, so a test never passes by accident)."""
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return np.array([vectors[t] for t in texts], dtype=np.float64)

    embed.calls = calls
    return embed


# ---------------------------------------------------------------- the figures, by hand


def test_identical_captions_have_cosine_one_and_count_under_the_margin():
    embed = stub({"a red cube": [1, 0], "a cube that is red": [1, 0], "a blue ball": [0, 1]})
    r = probe_pairs(embed, [("a red cube", "a cube that is red"), ("a red cube", "a blue ball")], margin=0.01)
    assert r["n"] == 2 and r["n_above"] == 1 and r["above"] == 0.5
    assert r["max"] == pytest.approx(1.0) and r["min"] == pytest.approx(0.0)
    assert r["mean"] == pytest.approx(0.5) and r["threshold"] == pytest.approx(0.99)
    assert r["quantiles"]["50"] == pytest.approx(0.5) and set(r["quantiles"]) == {"5", "25", "50", "75", "95"}


def test_orthogonal_vectors_have_cosine_zero_and_scale_does_not_matter():
    embed = stub({"x": [3, 0, 0], "y": [0, 0.5, 0], "z": [0, 0, 7]})
    r = probe_pairs(embed, [("x", "y"), ("y", "z"), ("x", "z")], return_cosines=True, ids=["i", "j", "k"])
    assert r["cosines"] == pytest.approx([0, 0, 0]) and r["ids"] == ["i", "j", "k"]
    assert r["n_above"] == 0 and r["mean"] == pytest.approx(0.0)


def test_the_margin_decides_what_counts_as_too_close():
    c = 0.98  # cosine of the pair
    embed = stub({"p": [1, 0], "n": [c, math.sqrt(1 - c * c)]})
    assert probe_pairs(embed, [("p", "n")], margin=0.01)["n_above"] == 0
    assert probe_pairs(embed, [("p", "n")], margin=0.05)["n_above"] == 1
    for bad in (0, -0.1, 2, float("nan")):
        with pytest.raises(LiftError, match="margin"):
            probe_pairs(embed, [("p", "n")], margin=bad)


def test_geometry_of_a_2d_set_with_known_anisotropy_and_effective_rank():
    # four directions spread evenly: mean pair cosine -1/3, covariance ~ diag(1, 1) -> rank 2
    g = probe_geometry(np.array([[1, 0], [0, 1], [-1, 0], [0, -1]]))
    assert g["anisotropy"] == pytest.approx(-1 / 3) and g["effective_rank"] == pytest.approx(2.0)
    assert (g["n"], g["dim"]) == (4, 2)
    # twice as much variance along x: eigenvalues 2:1 -> exp(entropy of (2/3, 1/3))
    g = probe_geometry(np.array([[1, 0], [-1, 0], [1, 0], [-1, 0], [0, 1], [0, -1]]))
    assert g["anisotropy"] == pytest.approx(-0.2)
    assert g["effective_rank"] == pytest.approx(
        math.exp(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    )
    # two orthogonal unit vectors vary along one line only; lengths do not count (cosines)
    g = probe_geometry(np.array([[5, 0], [0, 2]]))
    assert g["anisotropy"] == pytest.approx(0.0) and g["effective_rank"] == pytest.approx(1.0)
    # all one direction: fully anisotropic, no variance at all
    g = probe_geometry(np.array([[1, 1], [2, 2], [3, 3]]))
    assert g["anisotropy"] == pytest.approx(1.0) and g["effective_rank"] == 0.0
    with pytest.raises(LiftError, match="at least 2"):
        probe_geometry(np.array([[1, 0]]))


def test_class_prompts_with_one_near_duplicate_pair_named():
    near = [0.999, math.sqrt(1 - 0.999**2), 0]
    vectors = {"a photo of a cat": [1, 0, 0], "a photo of a kitten": near, "a photo of a truck": [0, 0, 1]}
    prompts = class_prompts(["cat", "kitten", "truck"], ["a photo of a {label}"])
    r = probe_classes(stub(vectors), prompts, margin=0.01)
    assert r["n_classes"] == 3 and r["templates"] == 1
    assert {r["closest"][0]["a"], r["closest"][0]["b"]} == {"cat", "kitten"}
    assert r["closest"][0]["cosine"] == pytest.approx(0.999) and r["nn_max"] == pytest.approx(0.999)
    assert r["n_above"] == 2 and r["above"] == pytest.approx(2 / 3)  # cat and kitten, not truck
    assert r["nn_mean"] == pytest.approx((0.999 + 0.999 + 0) / 3)  # the truck is orthogonal to both


def test_class_vectors_average_the_templates_and_keep_repeated_names():
    # two templates: each class is the renormalised mean of its prompts, as zero-shot evaluation does
    vectors = {"a crane": [1, 0], "the crane": [1, 0], "a heron": [0, 1], "the heron": [1, 0]}
    prompts = class_prompts(["crane", "heron", "crane"], ["a {label}", "the {label}"])
    r = probe_classes(stub(vectors), prompts)
    assert r["templates"] == 2 and r["n_classes"] == 3
    assert {r["closest"][0]["a"], r["closest"][0]["b"]} == {"crane"}  # the repeated name collides
    assert r["closest"][1]["cosine"] == pytest.approx(math.cos(math.pi / 4))  # crane vs (1,1)/sqrt2


def test_caption_neighbours_across_images_and_distinct_texts():
    vectors = {"a red cube": [1, 0, 0], "a cube, red": [0.995, math.sqrt(1 - 0.995**2), 0],
               "a blue ball": [0, 0, 1], "a small blue ball": [0, 0.6, 0.8]}  # fmt: skip
    # retrieval-style: both images have "a red cube" (cosine 1: the test set's ceiling, not the encoder's);
    # "a cube, red" under image 1 is a different text the encoder can barely tell from image 0's
    caps = ["a red cube", "a blue ball", "a red cube", "a cube, red", "a small blue ball"]
    r = probe_captions(stub(vectors), caps, groups=[0, 0, 1, 1, 1], margin=0.01)
    assert (r["n_captions"], r["n_distinct"], r["n_groups"]) == (5, 4, 2)
    assert r["identical_elsewhere"] == 2
    assert r["nn"]["n_above"] == 3  # both red cubes (1.0) and the red cube's rewording (0.995)
    assert r["nn_distinct"]["n_above"] == 2 and r["nn_distinct"]["max"] == pytest.approx(0.995)
    assert {r["closest"][0]["a"], r["closest"][0]["b"]} == {"a red cube", "a cube, red"}
    assert r["closest"][1]["cosine"] == pytest.approx(0.8)  # the two balls
    # a flat caption file: repeated texts are one caption; the near pair is counted, the balls are not
    caps = ["a red cube", "a cube, red", "a blue ball", "a red cube", "a small blue ball"]
    r = probe_captions(stub(vectors), caps, margin=0.01)
    assert (r["n_captions"], r["n_distinct"]) == (5, 4)
    assert r["nn"]["n_above"] == 2 and r["nn"]["n"] == 4 and r["identical_elsewhere"] == 0
    assert r["nn"]["max"] == pytest.approx(0.995) and r["nn_distinct"] == r["nn"]
    assert r["geometry"]["n"] == 4
    # one image only: no other image's caption to compare with
    assert probe_captions(stub(vectors), caps[:2], groups=[7, 7])["nn"] is None
    assert probe_captions(stub(vectors), caps[:3], groups=[0, 0, 1])["nn_distinct"]["max"] == pytest.approx(0)


def test_sugarcrepe_tasks_embed_each_text_once(tmp_path):
    pairs = {"0": {"filename": "a.png", "caption": "a red cube", "negative_caption": "a blue cube"}}
    (tmp_path / "swap_att.json").write_text(json.dumps(pairs))
    (tmp_path / "add_obj.json").write_text(json.dumps(pairs))
    embed = stub({"a red cube": [1, 0], "a blue cube": [1, 1]})
    r = probe_sugarcrepe(embed, tmp_path)
    assert list(r) == ["add_obj", "swap_att"]  # SugarCrepe's order
    assert r["swap_att"]["mean"] == pytest.approx(math.cos(math.pi / 4))
    assert sum(len(c) for c in embed.calls) == 2


def test_class_list_files(tmp_path):
    txt = tmp_path / "classes.txt"
    txt.write_text("red circle\n\nblue square\n")
    assert read_class_list(txt) == ["red circle", "blue square"]
    idx = tmp_path / "imagenet_class_index.json"
    idx.write_text(json.dumps({"1": ["n02", "goldfish"], "0": ["n01", "great_white_shark"]}))
    assert read_class_list(idx) == ["great white shark", "goldfish"]


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "world"
    assert main(["synth", str(out), "--train-size", "20", "--test-size", "8", "--image-size", "16",
                 "--no-progress"]) == 0  # fmt: skip
    return out


def _run(capsys, *argv):
    code = main(["probe", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(capsys, *argv, match):
    code, out, err = _run(capsys, *argv)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def test_probe_command_on_a_synthetic_world(world, tmp_path, capsys):
    out_file = tmp_path / "probe.json"
    code, out, err = _run(
        capsys, "--annotations", world / "sugarcrepe", "--classnames", world / "zeroshot" / "classnames.txt",
        "--captions", world / "retrieval" / "captions.json", "--json", "--out", out_file,
    )  # fmt: skip
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "| figure | default |" in out and "| swap_att (8 pairs) |" in out
    assert "nearest-neighbour cos" in out and "effective rank" in out and "another image's caption" in out
    report = json.loads(lines[-1])  # the JSON is the last line
    assert report == json.loads(out_file.read_text())
    assert report["format"] == "lift-probe" and report["margin"] == 0.01
    (col,) = report["columns"]
    assert col["text_encoder"]["dim"] == 384 and col["transform"] is None and col["kind"] == "encoder"
    assert list(col["sugarcrepe"]) == ["add_obj", "add_att", "replace_obj", "replace_att", "replace_rel",
                                       "swap_obj", "swap_att"]  # fmt: skip
    for r in col["sugarcrepe"].values():
        assert r["n"] == 8 and -1 <= r["mean"] <= 1 and 0 <= r["above"] <= 1
    assert col["classes"]["n_classes"] == 48 and len(col["classes"]["closest"]) == 5
    assert col["captions"]["n_captions"] == 40 and col["captions"]["n_groups"] == 8
    assert 1 <= col["captions"]["geometry"]["effective_rank"] <= 40
    # a rerun replaces its own result; any other file is never overwritten
    assert _run(capsys, "--annotations", world / "sugarcrepe", "--out", out_file)[0] == 0
    other = tmp_path / "notes.json"
    other.write_text("{}")
    _one_line_error(
        capsys, "--annotations", world / "sugarcrepe", "--out", other, match="not a lift probe result"
    )
    assert other.read_text() == "{}"


def test_bad_input_is_one_line_with_exit_2(world, tmp_path, capsys):
    _one_line_error(capsys, "--annotations", tmp_path / "nowhere", match="no such folder")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, "--annotations", tmp_path / "empty", match="no SugarCrepe files")
    bad = tmp_path / "classes.json"
    bad.write_text(json.dumps({"0": "tench"}))
    _one_line_error(capsys, "--classnames", bad, match="imagenet_class_index.json")
    broken = tmp_path / "classes2.json"
    broken.write_text("{not json")
    _one_line_error(capsys, "--classnames", broken, match="not readable JSON")
    binary = tmp_path / "classes.txt"
    binary.write_bytes(b"red circle\n\xff\xfe\n")
    _one_line_error(capsys, "--classnames", binary, match="not UTF-8")
    _one_line_error(
        capsys,
        "--annotations",
        world / "sugarcrepe",
        "--templates",
        world / "zeroshot" / "classnames.txt",
        match="give --classnames too",
    )
    _one_line_error(capsys, match="nothing to probe")
    _one_line_error(capsys, "--store", tmp_path / "nostore", "--pooling", "cls", match="--pooling")
    with pytest.raises(SystemExit) as e:  # argparse: out-of-range flags
        main(["probe", "--annotations", str(world / "sugarcrepe"), "--margin", "0"])
    assert e.value.code == 2


def test_probe_through_stores_side_by_side(world, tmp_path, capsys):
    raw, pca = tmp_path / "raw", tmp_path / "pca"
    assert main(["embed", str(world / "train" / "00000.parquet"), "--caption-field", "re_caption",
                 "--out", str(raw), "--store-dtype", "float32", "--no-progress"]) == 0  # fmt: skip
    assert main(["store", "transform", str(raw), "--out", str(pca), "--pca", "16", "--no-progress"]) == 0
    from lift.store import open_store

    transform = open_store(pca).transform  # centred, projected on the top 16 principal axes
    capsys.readouterr()
    code, out, err = _run(
        capsys, "--text-encoder", "default", "--store", raw, "--store", pca,
        "--annotations", world / "sugarcrepe", "--store-sample", 12, "--json",
    )  # fmt: skip
    assert code == 0, err
    enc, st_raw, st_pca = json.loads(out.strip().splitlines()[-1])["columns"]
    assert [c["kind"] for c in (enc, st_raw, st_pca)] == ["encoder", "store", "store"]
    assert f"| figure | default | {raw} | {pca} |" in out and "transform pca 16, 16-d targets" in out
    # the raw store's encoder is the raw column's: same targets, same figures
    assert st_raw["transform"] is None and st_raw["text_encoder"] == enc["text_encoder"]
    assert st_raw["sugarcrepe"]["swap_att"]["mean"] == pytest.approx(enc["sugarcrepe"]["swap_att"]["mean"])
    # the transformed store is probed through its transform: cosines of transform.apply(encoder output)
    assert st_pca["transform"] == transform.identity and st_pca["dim"] == 16
    from lift.evaluate.formats import read_sugarcrepe_file
    from lift.text import TextEncoder

    items = read_sugarcrepe_file(world / "sugarcrepe" / "swap_att.json", ErrorPolicy())
    encoder = TextEncoder.from_pretrained("default")
    pos, neg = (transform.apply(encoder.encode(t).numpy()) for t in ([i.caption for i in items],
                                                                      [i.negative_caption for i in items]))  # fmt: skip
    cos = (pos * neg).sum(1) / np.linalg.norm(pos, axis=1) / np.linalg.norm(neg, axis=1)
    assert st_pca["sugarcrepe"]["swap_att"]["mean"] == pytest.approx(float(cos.mean()), abs=1e-5)
    assert st_pca["sugarcrepe"]["swap_att"]["mean"] != pytest.approx(
        enc["sugarcrepe"]["swap_att"]["mean"], abs=1e-3
    )
    # and the stored vectors' own geometry: 12 sampled rows of 16-d centred vectors
    g = st_pca["store_vectors"]["re_caption"]
    assert (g["n"], g["dim"]) == (12, 16) and g["anisotropy"] < st_raw["store_vectors"]["re_caption"][
        "anisotropy"
    ]


def test_a_store_whose_encoder_folder_moved_needs_a_matching_text_encoder(world, tmp_path, capsys):
    from lift.store import StoreWriter
    from lift.text import TextEncoder

    enc = TextEncoder.from_pretrained("default")
    store = tmp_path / "moved"
    w = StoreWriter(store, identity=enc.identity, dim=enc.dim, dtype="float32", shard_names=["00000"],
                    extra={"text_encoder_path": str(tmp_path / "gone")})  # fmt: skip
    w.write_shard(0, ["a", "b"], enc.encode(["a red cube", "a blue ball"]).numpy())
    w.finalize()
    ann = world / "sugarcrepe"
    _one_line_error(capsys, "--store", store, "--annotations", ann, match="name the folder now holding it")
    code, out, err = _run(
        capsys, "--store", store, "--text-encoder", "default", "--annotations", ann, "--json"
    )
    assert code == 0, err
    assert [c["kind"] for c in json.loads(out.strip().splitlines()[-1])["columns"]] == ["encoder", "store"]


def test_caption_sets_from_coco_txt_and_caption_tables(world, tmp_path):
    from lift.probe import read_caption_set

    coco = read_caption_set(world / "retrieval" / "captions.json", sample=12, seed=3)
    assert coco.kind == "coco" and coco.total == 40 and len(coco.captions) == 10  # whole images of 5
    assert len(set(coco.groups)) == 2 and coco == read_caption_set(world / "retrieval" / "captions.json",
                                                                   sample=12, seed=3)  # fmt: skip
    table = read_caption_set(world / "train" / "00000.parquet", caption_field="re_caption")
    assert table.kind == "parquet" and len(table.captions) == 20 and table.groups is None
    txt = tmp_path / "caps.txt"
    txt.write_text("a red cube\n\na blue ball\n")
    assert read_caption_set(txt).captions == ["a red cube", "a blue ball"]
    with pytest.raises(LiftError, match="one caption field"):
        read_caption_set(world / "train" / "00000.parquet", caption_field="org_caption,re_caption")
    with pytest.raises(LiftError, match="no such caption file"):
        read_caption_set(tmp_path / "missing.json")
