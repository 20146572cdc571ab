"""`lift synth`: a reproducible, checkable compositional world written in the real data formats."""

import csv
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from eval_standin import StandIn
from lift.cli import main
from lift.data.synth.captions import full_sentence, long_caption, retrieval_captions
from lift.data.synth.checker import caption_holds, parse_caption
from lift.data.synth.generate import SynthConfig, generate_world, scene_rng
from lift.data.synth.minimal_pairs import MMVP_PATTERNS
from lift.data.synth.render import render
from lift.data.synth.sugarcrepe import KINDS
from lift.data.synth.world import BACKGROUNDS, COLOURS, PATTERNS, SHAPES, SIZES, Obj, Scene, sample_scene
from lift.errors import LiftError
from lift.evaluate import EvalContext, run_evaluator

SMALL = dict(train_size=60, test_size=40, shard_size=25)
HELD = {("orange", "triangle"), ("purple", "star")}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, SynthConfig(**SMALL), progress=False)
    return out


def _train_members(world: Path) -> list[dict]:
    """Every training sample as {key: {ext: bytes}}, in tar order, straight from the tar files."""
    samples = []
    for tar_path in sorted((world / "train").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            by_key: dict[str, dict] = {}
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                by_key.setdefault(key, {"__key__": key})[ext] = tar.extractfile(m).read()
            samples += list(by_key.values())
    return samples


# ---- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_whatever_the_workers(world, tmp_path):
    generate_world(tmp_path / "again", SynthConfig(**SMALL), workers=2, progress=False)
    assert _digest(world) == _digest(tmp_path / "again")
    generate_world(tmp_path / "other", SynthConfig(**SMALL, seed=1), progress=False)
    a, b = _digest(world), _digest(tmp_path / "other")
    assert a.keys() == b.keys()
    for name in [
        "train/00000.tar",
        "train/00000.parquet",
        "sugarcrepe/add_obj.json",
        "retrieval/captions.json",
        "winoground/examples.jsonl",
        "mmvp/Questions.csv",
        "long-retrieval/caption/000000.txt",
    ]:
        assert a[name] != b[name], name


# The text (captions, item lists, scene graphs, train metadata) of the splits that existed before the
# Winoground, MMVP and long-retrieval splits, for SMALL at seed 0, taken before they were added: a new
# split draws from its own random streams and must not change a byte of the others.
EXISTING_SPLITS_TEXT_SHA256 = "d892701456803f7aa0585444fbf03238237012c3d4a6d43abc4eeb9e15888369"


def test_splits_added_later_leave_the_existing_ones_byte_identical(world):
    h = hashlib.sha256()
    for p in sorted(world.rglob("*")):
        rel = str(p.relative_to(world))
        if (
            p.is_file()
            and rel.split("/")[0] in ("sugarcrepe", "zeroshot", "retrieval")
            and p.suffix in (".json", ".txt")
        ):
            h.update(rel.encode())
            h.update(p.read_bytes())
    for tar_path in sorted((world / "train").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if not m.name.endswith(".png"):  # PNG bytes depend on zlib's version; their scenes do not
                    h.update(m.name.encode())
                    h.update(tar.extractfile(m).read())
    assert h.hexdigest() == EXISTING_SPLITS_TEXT_SHA256


def test_tar_headers_carry_no_time_or_owner(world):
    with tarfile.open(world / "train" / "00000.tar") as tar:
        for m in tar.getmembers():
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")


# ---- the real formats --------------------------------------------------------------------------


def test_train_shards_read_with_webdataset_and_align_with_parquet(world):
    import webdataset as wds

    tars = sorted((world / "train").glob("*.tar"))
    assert [t.name for t in tars] == ["00000.tar", "00001.tar", "00002.tar"]
    total = 0
    for i, tar in enumerate(tars):
        ds = wds.WebDataset(str(tar), shardshuffle=False, empty_check=False).decode("pil")
        samples = list(ds)
        table = pq.read_table(world / "train" / f"{i:05d}.parquet")
        assert table.column_names == ["key", "org_caption", "re_caption"]
        rows = table.to_pylist()
        assert [s["__key__"] for s in samples] == [r["key"] for r in rows]
        assert rows[0]["key"] == f"{i * 10000:09d}"
        for s, r in zip(samples, rows):
            assert s["png"].size == (64, 64) and s["png"].mode == "RGB"
            assert s["txt"] == r["org_caption"] == s["json"]["org_caption"]
            assert s["json"]["re_caption"] == r["re_caption"]
            assert s["json"]["key"] == r["key"]
        total += len(rows)
    assert total == SMALL["train_size"]


def test_zeroshot_is_an_imagefolder_with_matching_classnames(world):
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(world / "zeroshot"))
    names = (world / "zeroshot" / "classnames.txt").read_text().splitlines()
    assert len(ds.classes) == len(COLOURS) * len(SHAPES) == len(names)
    assert [c.replace("_", " ") for c in ds.classes] == names
    scenes = json.loads((world / "zeroshot" / "scenes.json").read_text())
    for path, label in ds.samples:
        rel = str(Path(path).relative_to(world / "zeroshot"))
        (obj,) = scenes[rel]["objects"]
        assert f"{obj['colour']} {obj['shape']}" == names[label]
    assert json.loads((world / "zeroshot" / "heldout.json").read_text())["classes"] == sorted(
        f"{c} {s}" for c, s in HELD
    )


def test_retrieval_is_coco_captions_with_several_true_captions_per_image(world):
    data = json.loads((world / "retrieval" / "captions.json").read_text())
    scenes = json.loads((world / "retrieval" / "scenes.json").read_text())
    assert len(data["images"]) == SMALL["test_size"]
    per_image: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann["caption"])
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    for img in data["images"]:
        assert (world / "retrieval" / "images" / img["file_name"]).is_file()
        caps = per_image[img["id"]]
        assert len(caps) == len(set(caps)) == 5
        # The first (reference) caption names every object with every attribute, and is true.
        assert caption_holds(caps[0], Scene.from_dict(scenes[str(img["id"])]))


def test_world_json_records_seed_vocabulary_holdout_and_counts(world):
    w = json.loads((world / "world.json").read_text())
    assert w["seed"] == 0 and w["image_size"] == 64
    assert w["vocabulary"]["shape"] == list(SHAPES) and w["vocabulary"]["colour"] == list(COLOURS)
    assert w["heldout_pairs"] == ["orange triangle", "purple star"]
    assert w["counts"]["train"] == {"scenes": 60, "shards": 3}
    for kind in KINDS:
        items = json.loads((world / "sugarcrepe" / f"{kind}.json").read_text())
        assert w["counts"]["sugarcrepe"][kind]["items"] == len(items) >= SMALL["test_size"] * 0.9
    n = SMALL["test_size"]
    assert w["counts"]["winoground"]["examples"] == n and w["counts"]["winoground"]["tags"] == {
        "Relation": n // 2,
        "Object": n // 2,
    }
    assert w["counts"]["mmvp"] == {"pairs": n, "patterns": {p: n // 4 for p in MMVP_PATTERNS}}
    assert w["counts"]["long-retrieval"]["images"] == n
    assert 0 < w["counts"]["winoground"]["heldout_examples"] < n


# ---- held-out pairs ----------------------------------------------------------------------------


def test_heldout_pairs_never_in_train_and_present_in_every_test_split(world):
    for s in _train_members(world):
        meta = json.loads(s["json"])
        assert not {(o["colour"], o["shape"]) for o in meta["scene"]["objects"]} & HELD
        text = (meta["org_caption"] + " " + meta["re_caption"]).replace(",", " ")
        assert "orange triangle" not in text and "purple star" not in text
    for split in ("sugarcrepe", "retrieval"):
        scenes = json.loads((world / split / "scenes.json").read_text()).values()
        assert any({(o["colour"], o["shape"]) for o in sc["objects"]} & HELD for sc in scenes), split
    ids = json.loads((world / "retrieval" / "heldout.json").read_text())["image_ids"]
    scenes = json.loads((world / "retrieval" / "scenes.json").read_text())
    for image_id, sc in scenes.items():
        if {(o["colour"], o["shape"]) for o in sc["objects"]} & HELD:
            assert int(image_id) in ids
    assert len(list((world / "zeroshot" / "purple_star").iterdir())) >= 1


# ---- SugarCrepe: every positive true, every negative false ---------------------------------------

NP = re.compile(
    r"an? (?:(small|large) )?(?:(solid|striped|dotted) )?(?:("
    + "|".join(COLOURS)
    + r") )?("
    + "|".join(SHAPES)
    + ")"
)
REL = re.compile(r" (to the left of|to the right of|above|below) ")


def _pixel_extents(scene: Scene, size: int = 64) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of the pixels each object paints when drawn alone."""
    out = []
    bg = np.array(BACKGROUNDS[scene.background])
    for obj in scene.objects:
        px = np.asarray(render(Scene(scene.background, [obj]), size))
        ys, xs = np.nonzero((px != bg).any(-1))
        out.append((xs.min(), ys.min(), xs.max(), ys.max()))
    return out


def _pixel_relation(a, b, rel: str) -> bool:
    return {
        "to the left of": a[2] < b[0],
        "to the right of": a[0] > b[2],
        "above": a[3] < b[1],
        "below": a[1] > b[3],
    }[rel]


def _independent_truth(caption: str, scene: Scene) -> bool:
    """A second evaluator: regex noun phrases, relations from the drawn pixels, brute-force matching."""
    import itertools

    rel = REL.search(caption)
    parts = [caption[: rel.start()], caption[rel.end() :]] if rel else re.split(r", | and ", caption)
    nps = []
    for p in parts:
        m = NP.fullmatch(p)
        assert m, (caption, p)
        nps.append(dict(zip(("size", "pattern", "colour", "shape"), m.groups())))
    ext = _pixel_extents(scene)
    for match in itertools.permutations(range(len(scene.objects)), len(nps)):
        attrs_ok = all(
            v is None or getattr(scene.objects[m], k) == v
            for np_, m in zip(nps, match)
            for k, v in np_.items()
        )
        if attrs_ok and (not rel or _pixel_relation(ext[match[0]], ext[match[1]], rel.group(1))):
            return True
    return False


def _edit_shape(kind: str, pos: str, neg: str) -> None:
    """The negative differs from the positive the way SugarCrepe's kind says."""
    p, n = NP.findall(pos), NP.findall(neg)
    prel, nrel = REL.findall(pos), REL.findall(neg)
    if kind == "add_obj":
        assert len(n) == len(p) + 1 and all(x in n for x in p)
    elif kind == "add_att":
        diff = [(a, b) for a, b in zip(p, n) if a != b]
        assert len(n) == len(p) and len(diff) == 1
        assert sum(x == "" for x in diff[0][0]) == sum(x == "" for x in diff[0][1]) + 1
    elif kind in ("replace_obj", "replace_att"):
        diff = [(a, b) for a, b in zip(p, n) if a != b]
        assert len(n) == len(p) and len(diff) == 1 and prel == nrel
        changed = [i for i in range(4) if diff[0][0][i] != diff[0][1][i]]
        assert changed == [3] if kind == "replace_obj" else (len(changed) == 1 and changed[0] < 3)
    elif kind == "replace_rel":
        assert p == n and prel and nrel and prel != nrel
    elif kind == "swap_obj":
        assert n == p[::-1] and prel == nrel and len(p) == 2
    elif kind == "swap_att":
        assert len(p) == len(n) == 2 and sorted(sum(p, ())) == sorted(sum(n, ())) and p != n


@pytest.mark.parametrize("kind", KINDS)
def test_sugarcrepe_positives_true_negatives_false(world, kind):
    items = json.loads((world / "sugarcrepe" / f"{kind}.json").read_text())
    scenes = json.loads((world / "sugarcrepe" / "scenes.json").read_text())
    assert list(items) == [str(i) for i in range(len(items))]
    for item in items.values():
        assert set(item) == {"filename", "caption", "negative_caption"}
        assert (world / "sugarcrepe" / "images" / item["filename"]).is_file()
        scene = Scene.from_dict(scenes[item["filename"]])
        pos, neg = item["caption"], item["negative_caption"]
        assert caption_holds(pos, scene) and not caption_holds(neg, scene, lenient=True)
        assert _independent_truth(pos, scene), pos
        assert not _independent_truth(neg, scene), neg
        _edit_shape(kind, pos, neg)


def test_checker_reads_captions_and_rejects_outside_grammar():
    scene = Scene(
        "slate",
        [
            Obj("circle", "red", "large", "solid", 0.25, 0.3),
            Obj("square", "blue", "small", "striped", 0.75, 0.7),
        ],
    )
    assert caption_holds("a red circle to the left of a blue square", scene)
    assert caption_holds("a small striped blue square below a circle", scene)
    assert not caption_holds("a blue square to the left of a red circle", scene, lenient=True)
    assert caption_holds("a red circle and a square", scene)
    assert not caption_holds("a red circle and a red circle", scene)  # needs two distinct objects
    assert not caption_holds("an orange circle", scene)
    assert parse_caption("a blue square, an orange star and a circle").nps[1] == {
        "colour": "orange",
        "shape": "star",
    }
    # counts: exactly that many objects with the stated attributes
    assert caption_holds("two shapes", scene) and not caption_holds("three shapes", scene, lenient=True)
    assert caption_holds("one red circle", scene) and caption_holds("one small shape", scene)
    assert not caption_holds("two circles", scene) and not caption_holds("one shape", scene)
    bad_captions = ("red circle", "a circle red", "an red circle", "a red circle, a blue square", "a red",
                    "two shape", "one circles", "three", "two circles red")  # fmt: skip
    for bad in bad_captions:
        with pytest.raises(ValueError):
            parse_caption(bad)


# ---- geometry and captions ---------------------------------------------------------------------


def test_relations_hold_on_the_drawn_pixels_and_objects_never_overlap(world):
    rel_words = {
        "left of": "to the left of",
        "right of": "to the right of",
        "above": "above",
        "below": "below",
    }
    for s in _train_members(world)[:40]:
        meta = json.loads(s["json"])
        scene = Scene.from_dict(meta["scene"])
        image = np.asarray(Image.open(io.BytesIO(s["png"])))
        assert (image == np.asarray(render(scene, 64))).all()  # the shard image is this scene graph
        bg = np.array(BACKGROUNDS[scene.background])
        masks = [(np.asarray(render(Scene(scene.background, [o]), 64)) != bg).any(-1) for o in scene.objects]
        assert (sum(m.astype(int) for m in masks) <= 1).all()
        assert ((image != bg).any(-1) == np.logical_or.reduce(masks)).all()
        ext = _pixel_extents(scene)
        for r in meta["scene"]["relations"]:
            a, b = ext[r["subject"]], ext[r["object"]]
            assert _pixel_relation(a, b, rel_words[r["relation"]]), (r, a, b)
        if len(scene.objects) > 1:
            assert meta["scene"]["relations"]  # every pair of objects is related


def test_long_caption_states_every_attribute_and_relation():
    for i in range(30):
        rng = scene_rng(5, "test", i)
        scene = sample_scene(rng, 3)
        text = long_caption(scene, rng).lower()
        for o in scene.objects:
            assert f"{o.colour} {o.shape}" in text
            sentence = next(s for s in text.split(". ") if f"{o.colour} {o.shape}" in s)
            assert (
                o.size in sentence
                and {"solid": "solid", "striped": "stripe", "dotted": "dot"}[o.pattern] in sentence
            )
        n_pairs_stated = len(re.findall(r" is (?:to the left of|to the right of|above|below)", text))
        assert n_pairs_stated == 3
        assert full_sentence(scene) == retrieval_captions(scene, rng)[0]
        assert caption_holds(full_sentence(scene), scene)


def test_vocabulary_is_at_least_what_the_issue_asks():
    assert {"circle", "square", "triangle", "star", "hexagon", "cross"} <= set(SHAPES)
    assert {"red", "green", "blue", "yellow", "purple", "orange", "white", "gray"} <= set(COLOURS)
    assert set(SIZES) == {"small", "large"} and len(PATTERNS) == 3


# ---- resume, config, CLI -----------------------------------------------------------------------


def test_rerun_after_a_simulated_kill_gives_the_same_bytes(world, tmp_path):
    out = tmp_path / "w"
    generate_world(out, SynthConfig(**SMALL), progress=False)
    # The states a kill can leave: a finished tar without its parquet, a torn temp file, a half-written split.
    (out / "train" / "00001.parquet").unlink()
    (out / "train" / ".00002.tar.abc.tmp").write_bytes(b"torn")
    (out / "train" / "00002.parquet").unlink()
    (out / "train" / "00002.tar").write_bytes(b"torn")
    os.rename(out / "sugarcrepe", out / ".sugarcrepe.tmp")
    os.rename(out / "mmvp", out / ".mmvp.tmp")
    (out / "world.json").unlink()
    generate_world(out, SynthConfig(**SMALL), progress=False)
    assert _digest(out) == _digest(world)


def test_real_kill_then_rerun_matches_an_uninterrupted_run(tmp_path):
    cfg = dict(train_size=200, shard_size=10, test_size=10)
    # The library call itself (not `python -m lift`, whose start-up imports every stage).
    code = (
        "import sys; from lift.data.synth.generate import SynthConfig, generate_world; "
        f"generate_world(sys.argv[1], SynthConfig(**{cfg!r}), progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "killed")])
    deadline = time.time() + 60
    while not (tmp_path / "killed" / "train" / "00001.parquet").exists() and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "world.json").exists()  # it was stopped part way
    generate_world(tmp_path / "killed", SynthConfig(**cfg), progress=False)
    generate_world(tmp_path / "clean", SynthConfig(**cfg), progress=False)
    assert _digest(tmp_path / "killed") == _digest(tmp_path / "clean")


def test_other_config_refused_unless_forced_and_cli_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["--train-size", "10", "--test-size", "5", "--no-progress", "--image-format", "jpg"]
    assert main(["synth", str(out), *args]) == 0
    summary = capsys.readouterr().out
    assert summary.count("\n") == 1 and "10 train scenes in 1 shards" in summary
    assert "winoground 5 examples, mmvp 5 pairs, long-retrieval 5 images" in summary
    with tarfile.open(out / "train" / "00000.tar") as tar:
        assert tar.getnames()[0].endswith(".jpg")
    assert main(["synth", str(out), *args, "--seed", "2"]) == 2
    assert "different config" in capsys.readouterr().err
    assert main(["synth", str(out), *args, "--seed", "2", "--force"]) == 0
    assert json.loads((out / "world.json").read_text())["seed"] == 2
    with pytest.raises(LiftError, match="pink star"):
        generate_world(tmp_path / "x", SynthConfig(holdout=["pink star"]), progress=False)
    with pytest.raises(LiftError, match="image-size"):
        generate_world(tmp_path / "x", SynthConfig(image_size=512), progress=False)


def test_bench_prints_scenes_per_second_as_the_last_json_line(capsys):
    assert main(["bench", "synth", "--json", "--n", "20", "--workers", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["scenes_per_s"] > 0 and result["n"] == 20 and result["image_size"] == 64


# ---- Winoground, MMVP-VLM and long-caption retrieval splits ------------------------------------

COUNT = re.compile(r"(one|two|three) (shape|shapes)")


def _independent(caption: str, scene: Scene) -> bool:
    """The second evaluator of captions above, with counts read as the number of objects."""
    m = COUNT.fullmatch(caption)
    if m:
        return len(scene.objects) == ("one", "two", "three").index(m.group(1)) + 1
    return _independent_truth(caption, scene)


def _checked_pair(c0: str, s0: Scene, c1: str, s1: Scene) -> None:
    """Each caption true of its own scene and false of the other: by the checker and independently."""
    assert caption_holds(c0, s0) and caption_holds(c1, s1), (c0, c1)
    assert not caption_holds(c0, s1, lenient=True) and not caption_holds(c1, s0, lenient=True), (c0, c1)
    assert _independent(c0, s0) and _independent(c1, s1), (c0, c1)
    assert not _independent(c0, s1) and not _independent(c1, s0), (c0, c1)


def _drawn(path: Path, scene: Scene) -> bool:
    return (np.asarray(Image.open(path)) == np.asarray(render(scene, 64))).all()


WINOGROUND_FIELDS = ["id", "image_0", "image_1", "caption_0", "caption_1", "tag", "secondary_tag",
                     "num_main_preds", "collapsed_tag"]  # fmt: skip


def test_winoground_split_swaps_words_between_two_checked_scenes(world):
    folder = world / "winoground"
    examples = [json.loads(line) for line in (folder / "examples.jsonl").read_text().splitlines()]
    scenes = json.loads((folder / "scenes.json").read_text())
    held = set(json.loads((folder / "heldout.json").read_text())["ids"])
    assert [e["id"] for e in examples] == list(range(SMALL["test_size"]))
    for e in examples:
        assert list(e) == WINOGROUND_FIELDS and e["collapsed_tag"] == e["tag"] and e["num_main_preds"] == 1
        s0, s1 = (Scene.from_dict(scenes[e[f"image_{k}"]]) for k in (0, 1))
        assert e["image_0"] == f"ex_{e['id']}_img_0"  # the release's names, without the extension
        assert _drawn(folder / "images" / f"{e['image_0']}.png", s0)
        assert _drawn(folder / "images" / f"{e['image_1']}.png", s1)
        c0, c1 = e["caption_0"], e["caption_1"]
        assert c0 != c1 and sorted(c0.split()) == sorted(c1.split())  # the same words, rearranged
        _checked_pair(c0, s0, c1, s1)
        p0, p1 = NP.findall(c0), NP.findall(c1)
        assert REL.findall(c0) == REL.findall(c1) and len(p0) == len(p1) == 2
        if e["tag"] == "Object":  # the noun phrases change places; so do the objects
            assert p1 == p0[::-1] and e["secondary_tag"] == ""
            assert sorted(o["center"] for o in scenes[e["image_0"]]["objects"]) == sorted(
                o["center"] for o in scenes[e["image_1"]]["objects"]
            )
        else:  # one attribute swapped between the noun phrases, and between the objects
            attr = e["secondary_tag"]
            k = ("size", "pattern", "colour").index(attr)
            assert [x[3] for x in p0] == [x[3] for x in p1] and (p1[0][k], p1[1][k]) == (p0[1][k], p0[0][k])
        involves = any({(o.colour, o.shape) for o in s.objects} & HELD for s in (s0, s1))
        assert not involves or e["id"] in held


def _one_pattern_differs(pattern: str, a: list[dict], b: list[dict]) -> bool:
    """Whether scene graphs a and b (their objects) differ in `pattern` and in nothing else."""

    def without(objs: list[dict], *keys: str) -> list[dict]:
        return [{k: v for k, v in o.items() if k not in keys} for o in objs]

    if pattern == "Count":  # one object fewer, the others as they were
        small, large = sorted((without(a, "id"), without(b, "id")), key=len)
        return len(large) == len(small) + 1 and all(o in large for o in small)
    if pattern == "Position":  # the same objects, the scene mirrored along one axis
        mirrored = any(
            all(abs(x["center"][k] + y["center"][k] - 1) < 1e-9 for x, y in zip(a, b)) for k in (0, 1)
        )
        return without(a, "center", "bbox") == without(b, "center", "bbox") and mirrored
    attr = {"Color": "colour", "Size": "size"}[pattern]  # one object's attribute changed
    changed = [x[attr] != y[attr] for x, y in zip(a, b)]
    return (
        len(a) == len(b) and changed.count(True) == 1 and without(a, attr, "bbox") == without(b, attr, "bbox")
    )


def test_mmvp_split_pairs_scenes_differing_in_one_visual_pattern(world):
    folder = world / "mmvp"
    with open(folder / "Questions.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["Question ID", "Type", "Statement"]
    assert [int(r["Question ID"]) for r in rows] == list(range(1, 2 * SMALL["test_size"] + 1))
    types = [r["Type"] for r in rows]
    assert types == sorted(types, key=MMVP_PATTERNS.index)  # each pattern's pairs together, as released
    scenes = json.loads((folder / "scenes.json").read_text())
    for a, b in zip(rows[::2], rows[1::2]):
        assert a["Type"] == b["Type"]
        sa, sb = (Scene.from_dict(scenes[r["Question ID"]]) for r in (a, b))
        for r, s in ((a, sa), (b, sb)):
            assert _drawn(folder / "MLLM_VLM Images" / r["Type"] / f"{r['Question ID']}.png", s)
        _checked_pair(a["Statement"], sa, b["Statement"], sb)
        objs = [scenes[r["Question ID"]]["objects"] for r in (a, b)]
        assert _one_pattern_differs(a["Type"], *objs), (a, b)


def test_long_retrieval_split_is_urban1k_layout_with_the_long_description_only(world):
    folder = world / "long-retrieval"
    images = sorted(p.name for p in (folder / "image").iterdir())
    captions = sorted(p.name for p in (folder / "caption").iterdir())
    assert [n.replace(".png", "") for n in images] == [n.replace(".txt", "") for n in captions]
    assert len(images) == SMALL["test_size"]
    scenes = json.loads((folder / "scenes.json").read_text())
    texts = [(folder / "caption" / name).read_text() for name in captions]
    assert len(set(texts)) == len(texts)  # distinct queries
    for name, text in zip(captions, texts):
        stem = name.removesuffix(".txt")
        scene = Scene.from_dict(scenes[stem])
        assert _drawn(folder / "image" / f"{stem}.png", scene)
        lower = text.lower()
        for o in scene.objects:  # every object with every attribute, and every related pair
            sentence = next(s for s in lower.split(". ") if f"{o.colour} {o.shape}" in s)
            assert (
                o.size in sentence
                and {"solid": "solid", "striped": "stripe", "dotted": "dot"}[o.pattern] in sentence
            )
        pairs = {tuple(sorted((i, j))) for i, _, j in scene.relations()}
        assert len(re.findall(r" is (?:to the left of|to the right of|above|below)", lower)) == len(pairs)


def test_a_world_made_before_the_new_splits_gains_them_on_a_rerun(world, tmp_path):
    out = tmp_path / "old"
    generate_world(
        out, SynthConfig(**SMALL), progress=False, splits=("train", "sugarcrepe", "zeroshot", "retrieval")
    )
    before = {k: v for k, v in _digest(out).items() if k != "world.json"}
    generate_world(out, SynthConfig(**SMALL), progress=False)
    after = _digest(out)
    assert {k: after[k] for k in before} == before and after == _digest(world)


def test_lift_eval_reads_the_new_splits(world):
    ctx = EvalContext(progress=False)
    wino = run_evaluator("winoground", StandIn(), {"annotations": str(world / "winoground")}, ctx=ctx)
    assert wino.counts["examples"] == {"n": SMALL["test_size"], "skipped": 0}
    assert wino.counts["heldout/examples"]["n"] > 0 and "tag=Object/text" in wino.metrics
    # the same words in both captions: a bag-of-words text side ties on every example, and ties are wrong
    assert wino.metrics["text"] == 0.0
    mmvp = run_evaluator("mmvp", StandIn(), {"annotations": str(world / "mmvp")}, ctx=ctx)
    assert mmvp.counts["pairs"] == {"n": SMALL["test_size"], "skipped": 0}
    assert mmvp.notes["patterns"] == list(MMVP_PATTERNS)
    folder = str(world / "long-retrieval")  # Urban1k's layout: the dataset folder holds image/ and caption/
    cfg = {"annotations": folder, "images": folder, "format": "urban1k"}
    long = run_evaluator("long-retrieval", StandIn(), cfg, ctx=ctx)
    assert long.counts["images"] == long.counts["texts"] == {"n": SMALL["test_size"], "skipped": 0}
    assert long.counts["heldout/images"]["n"] > 0


def test_realistic_shards_are_laid_out_as_img2dataset_writes_them(tmp_path, capsys):
    from PIL import Image

    from lift.cli import main
    from lift.data.index import index_data

    args = ["--realistic", "--train-size", "12", "--test-size", "4", "--shard-size", "6", "--no-progress"]
    for name in ("a", "b"):
        assert main(["synth", str(tmp_path / name), *args]) == 0
    capsys.readouterr()
    train = tmp_path / "a" / "train"
    assert sorted(p.name for p in train.iterdir()) == [
        "00000.parquet", "00000.tar", "00000_stats.json", "00001.parquet", "00001.tar", "00001_stats.json"
    ]  # fmt: skip
    with tarfile.open(train / "00000.tar") as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(names[2]).read())
        image = Image.open(io.BytesIO(tar.extractfile(names[0]).read()))
    assert names[0].endswith(".jpg") and image.format == "JPEG" and image.size == (384, 384)
    assert {
        "url",
        "caption",
        "key",
        "status",
        "width",
        "height",
        "sha256",
        "org_caption",
        "re_caption",
    } <= set(meta)
    assert meta["status"] == "success" and meta["width"] == 384
    assert json.loads((train / "00000_stats.json").read_text())["successes"] == 6
    same = [(p.name, p.read_bytes()) for p in sorted(train.iterdir())]
    assert same == [(p.name, p.read_bytes()) for p in sorted((tmp_path / "b" / "train").iterdir())]
    assert len(index_data(str(train)).samples) == 12 and index_data(str(train)).unused_note() is None
