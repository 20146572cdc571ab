"""`lift eval suite` and `run_suite` (one model, one text cache, every entry checked before any model
runs), flags generated from each evaluator's config (built-ins and plugins alike), the retrieval
format default shared by the library and the command line, and tables for every evaluator."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from eval_standin import StandIn, solid
from lift.cli import main
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import EVALUATORS, EvalContext, get_evaluator, register, run_evaluator
from lift.evaluate.context import make_result
from lift.evaluate.options import fields_of, option
from lift.evaluate.results import SUGARCREPE_SUBSETS, compare_table, markdown_table, read_results
from lift.evaluate.suite import load_suite, parse_suite, run_suite
from lift.evaluate.text_cache import TextEmbeddingCache

CTX = {"progress": False}


@pytest.fixture
def scratch(monkeypatch):
    """Registers evaluators for one test only."""
    EVALUATORS.items()
    monkeypatch.setattr(EVALUATORS, "_entries", dict(EVALUATORS._entries))
    return EVALUATORS


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _help(capsys, *argv: str) -> str:
    code, out, _ = _run(capsys, *argv, "--help")
    assert code == 0
    return " ".join(out.split())


# ---------------------------------------------------------------- fixtures in the benchmarks' layouts


def _world(root: Path) -> dict[str, dict]:
    """Small SugarCrepe, SugarCrepe++, ImageFolder, Flickr30K CSV and Urban1k folders; each task's config."""
    for c in ("red", "green", "blue"):
        solid(root / "img" / f"{c}.png", c)
        solid(root / "zs" / c / f"{c}.png", c)
        solid(root / "urban" / "image" / f"{c}.png", c)
        (root / "urban" / "caption").mkdir(parents=True, exist_ok=True)
        (root / "urban" / "caption" / f"{c}.txt").write_text(f"a {c} and blue thing")
    sc = {"0": {"filename": "red.png", "caption": "red", "negative_caption": "blue"},
          "1": {"filename": "green.png", "caption": "red green", "negative_caption": "green"}}  # fmt: skip
    (root / "sc").mkdir()
    for s in SUGARCREPE_SUBSETS:
        (root / "sc" / f"{s}.json").write_text(json.dumps(sc))
    scpp = [
        {
            "id": 0,
            "filename": "blue.png",
            "caption": "blue",
            "caption2": "blue thing",
            "negative_caption": "red",
        }
    ]
    (root / "scpp").mkdir()
    for s in ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att"):
        (root / "scpp" / f"{s}.json").write_text(json.dumps(scpp))
    rows = [
        '"[""red"", ""a red one""]",test,red.png',
        '"[""green""]",test,green.png',
        '"[""blue""]",train,blue.png',
    ]
    (root / "flickr.csv").write_text("raw,split,filename\n" + "\n".join(rows) + "\n")
    return {
        "sugarcrepe": {"annotations": str(root / "sc"), "images": str(root / "img")},
        "sugarcrepe-pp": {"annotations": str(root / "scpp"), "images": str(root / "img")},
        "zeroshot": {"images": str(root / "zs"), "templates": ["a {label} photo", "{label}"]},
        "retrieval": {"annotations": str(root / "flickr.csv"), "images": str(root / "img")},
        "long-retrieval": {
            "format": "urban1k",
            "annotations": str(root / "urban"),
            "images": str(root / "urban"),
        },
    }


def _suite_file(path: Path, configs: dict[str, dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump([{"task": task, **cfg} for task, cfg in configs.items()]))
    return path


def _no_model(monkeypatch) -> None:
    monkeypatch.setattr("lift.load", lambda *a, **k: pytest.fail("a model was loaded"))


# ---------------------------------------------------------------- the suite


def test_the_suite_equals_each_evaluator_alone_and_embeds_each_text_once(tmp_path):
    configs = _world(tmp_path)
    alone = {
        task: run_evaluator(task, StandIn(), cfg, ctx=EvalContext(**CTX)) for task, cfg in configs.items()
    }
    model = StandIn()
    ctx = EvalContext(**CTX)
    suite = run_suite(model, [{"task": t, **c} for t, c in configs.items()], ctx)
    assert list(suite.results) == list(configs)
    for task, result in suite.results.items():
        assert result.metrics == alone[task].metrics and result.counts == alone[task].counts, task
    # one in-memory cache for the suite (no on-disk one given): each distinct text embedded once in all
    assert ctx.text_stats.encoded == model.texts_encoded == ctx.text_stats.unique - ctx.text_stats.cache_hits
    assert ctx.text_stats.cache_hits > 0
    assert suite.flat_metrics()["zeroshot/top1"] == alone["zeroshot"].metrics["top1"]


def test_the_suite_shares_an_on_disk_cache_and_counts_skips_per_evaluator(tmp_path):
    configs = _world(tmp_path)
    (tmp_path / "img" / "green.png").unlink()  # named by sugarcrepe and the Flickr CSV
    entries = [{"task": t, **configs[t]} for t in ("sugarcrepe", "retrieval")]
    with pytest.raises(LiftError, match=r"green\.png: image not found"):
        run_suite(StandIn(), entries, EvalContext(**CTX))
    cache = TextEmbeddingCache(tmp_path / "cache.sqlite")
    ctx = EvalContext(policy=ErrorPolicy("skip"), cache=cache, **CTX)
    suite = run_suite(StandIn(), entries, ctx)
    assert suite.results["sugarcrepe"].counts["add_obj"] == {"n": 1, "skipped": 1}
    assert suite.results["retrieval"].counts["images"] == {"n": 1, "skipped": 1}
    assert suite.results["retrieval"].notes["skipped"] == 1 and ctx.policy.skipped == 2
    assert "(n=1, skipped=1)" in markdown_table(suite.results["retrieval"])
    assert len(cache) > 0


def test_lift_eval_suite_prints_every_table_and_one_json_and_compares_task_by_task(
    tmp_path, monkeypatch, capsys
):
    configs = _world(tmp_path)
    suite = _suite_file(tmp_path / "suite.yaml", configs)
    monkeypatch.setattr("lift.load", lambda *a, **k: StandIn())
    argv = ["eval", "suite", "--checkpoint", "standin", "--suite", str(suite), "--no-cache", "--workers", "0",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    code, out, _ = _run(capsys, *argv, "--json", "--out", str(tmp_path / "a.json"))
    assert code == 0
    printed = json.loads(out.strip().splitlines()[-1])
    assert set(printed["results"]) == set(configs)
    for task in configs:
        assert f"## {task}\n" in out
        assert (
            printed["results"][task]["metrics"]
            == run_evaluator(task, StandIn(), configs[task], ctx=EvalContext(**CTX)).metrics
        )
    saved = read_results(tmp_path / "a.json")
    assert set(saved) == set(configs) and saved["zeroshot"].checkpoint == "standin"
    code, _, _ = _run(capsys, *argv, "--out", str(tmp_path / "a.json"))  # an earlier suite result: replaced
    assert code == 0
    alone = run_evaluator("retrieval", StandIn(), configs["retrieval"], ctx=EvalContext(**CTX))
    from lift.evaluate.results import write_result

    write_result(tmp_path / "one.json", alone)
    code, out, _ = _run(capsys, "eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"))
    assert code == 0 and "## long-retrieval" in out and "## sugarcrepe-pp" in out
    assert "| Δ | +0.0 | +0.0 | +0.0 | +0.0 | +0.0 | +0.0 | – |" in out  # the stand-in counts no cut captions
    code, out, _ = _run(capsys, "eval", "compare", str(tmp_path / "one.json"), str(tmp_path / "a.json"))
    assert (
        code == 0 and "## retrieval" in out and "only in" in out and "sugarcrepe" in out.split("only in")[1]
    )


def test_suite_paths_are_taken_from_the_suite_files_folder(tmp_path):
    configs = _world(tmp_path / "data")
    rel = {t: {k: (str(Path(v).relative_to(tmp_path)) if isinstance(v, str) and v.startswith(str(tmp_path)) else v)
               for k, v in c.items()} for t, c in configs.items()}  # fmt: skip
    entries = load_suite(_suite_file(tmp_path / "suite.yaml", rel))
    assert [e.name for e in entries] == list(configs)
    assert entries[0].config.annotations == str(tmp_path / "data" / "sc")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"task": "sugarcrep"}, r"entry 2: unknown evaluator 'sugarcrep'; known: .*sugarcrepe"),
        ({"task": "sugarcrepe", "annotation": "sc"}, r"entry 2 \(sugarcrepe\): unknown key\(s\) \['annotation'\]"),
        ({"task": "sugarcrepe", "annotations": "nope", "images": "img"}, r"entry 2 \(sugarcrepe\): annotations .*nope: folder not found"),
        ({"task": "retrieval", "annotations": "flickr.csv", "images": "img", "protocol": "some"},
         r"entry 2 \(retrieval\): protocol must be one of first-caption, all-captions, got 'some'"),
        ({"task": "long-retrieval", "format": "urban1k", "annotations": "urban", "images": "urban", "limit": 0},
         r"entry 2 \(long-retrieval\): limit must be >= 1, got 0"),
        ({"task": "zeroshot", "name": "zs2", "images": "zs", "templates": "none.txt"},
         r"none\.txt: cannot read templates"),
        ({"task": "retrieval", "name": "zeroshot", "annotations": "flickr.csv", "images": "img"},
         r"entry 2: a second entry named 'zeroshot'"),
        ({"task": "sugarcrepe"}, r"entry 2 \(sugarcrepe\): annotations is required"),
        ([1], r"entry 2: expected a mapping with a 'task' key"),
    ],
)  # fmt: skip
def test_a_bad_suite_is_one_line_before_any_model_runs(tmp_path, monkeypatch, capsys, entry, message):
    import yaml

    _world(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump([{"task": "zeroshot", "images": "zs"}, entry]))
    _no_model(monkeypatch)
    code, _, err = _run(capsys, "eval", "suite", "--checkpoint", "x", "--suite", str(suite), "--no-cache")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"lift eval: error: {suite}: ")
    import re

    assert re.search(message, err), err


def test_a_suite_entry_with_a_missing_column_or_image_fails_before_any_model(tmp_path, monkeypatch, capsys):
    configs = _world(tmp_path)
    (tmp_path / "flickr.csv").write_text('raw,filename\n"[""red""]",red.png\n')
    suite = _suite_file(tmp_path / "suite.yaml", {"retrieval": configs["retrieval"]})
    _no_model(monkeypatch)
    code, _, err = _run(capsys, "eval", "suite", "--checkpoint", "x", "--suite", str(suite), "--no-cache")
    assert code == 2 and err.count("\n") == 1 and "missing column(s) ['split']" in err
    (tmp_path / "img" / "red.png").unlink()
    suite = _suite_file(tmp_path / "suite.yaml", {"sugarcrepe": configs["sugarcrepe"]})
    code, _, err = _run(capsys, "eval", "suite", "--checkpoint", "x", "--suite", str(suite), "--no-cache")
    assert code == 2 and f"{tmp_path / 'img' / 'red.png'}: image not found" in err
    assert parse_suite(
        [{"task": "sugarcrepe", **configs["sugarcrepe"]}], mode="skip"
    )  # skip: left to the run
    code, _, err = _run(capsys, "eval", "suite", "--checkpoint", "x", "--suite", str(tmp_path / "none.yaml"))
    assert code == 2 and "none.yaml: suite file not found" in err


# ---------------------------------------------------------------- flags from the configs


def test_every_registered_evaluators_help_lists_its_config_fields(capsys):
    for name in EVALUATORS.names():
        text = _help(capsys, "eval", name)
        for spec in fields_of(get_evaluator(name).config_cls):
            assert spec.flag in text, (name, spec.flag)
        assert "--checkpoint" in text and "--on-error" in text and "--json" in text
    assert "--max-tokens N the text side's maximum length" in _help(capsys, "eval", "long-retrieval")
    assert "--max-tokens MAX_TOKENS its caption truncation" in _help(capsys, "eval", "sugarcrepe")


@dataclasses.dataclass
class _ShadeConfig:
    images: str = option("", required=True, path="dir", help="a folder of solid-colour images")
    colours: list[str] = option(
        default_factory=lambda: ["red"], choices=("red", "green", "blue"), help="targets"
    )
    top: int = option(1, ge=1, le=3, help="a hit if the target is among the top N words")
    strict: bool = option(True, help="count ties against the model")
    weight: float = 1.0
    words: list[str] = option(default_factory=lambda: ["red", "green", "blue"], help="candidate words",
                              convert=lambda text: text.split(","))  # fmt: skip


def test_a_plugin_evaluator_gets_flags_from_its_config(scratch, monkeypatch, capsys, tmp_path):
    seen = {}

    @register("shade", _ShadeConfig, help="share of images whose colour word ranks first")
    def shade(model, cfg: _ShadeConfig, ctx: EvalContext):
        seen["cfg"] = cfg
        started = time.perf_counter()
        paths = sorted(Path(cfg.images).glob("*.png"))
        img, _ = ctx.images(model, paths, "shade images")
        text = ctx.texts(model, cfg.words)
        hit = (img @ text.T).argmax(1) == 0
        return make_result("shade", model, cfg, ctx, metrics={"share": 100.0 * float(hit.double().mean())},
                           counts={"images": {"n": len(paths), "skipped": 0}}, started=started)  # fmt: skip

    text = _help(capsys, "eval", "shade")
    for flag in ("--images DIR", "--colours {red,green,blue} [{red,green,blue} ...]", "--top TOP", "--strict",
                 "--no-strict", "--weight WEIGHT", "--words WORDS"):  # fmt: skip
        assert flag in text, flag
    assert "a hit if the target is among the top N words (default: 1)" in text
    for i, c in enumerate(("red", "red", "blue", "green")):
        solid(tmp_path / "img" / f"{i}.png", c)
    monkeypatch.setattr("lift.load", lambda *a, **k: StandIn())
    argv = ["eval", "shade", "--checkpoint", "standin", "--no-cache", "--workers", "0", "--device", "cpu",
            "--no-progress", "--images", str(tmp_path / "img")]  # fmt: skip
    code, out, _ = _run(capsys, *argv, "--json", "--top", "2", "--no-strict", "--colours", "red", "blue",
                        "--weight", "0", "--words", "red,green,blue")  # fmt: skip
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["metrics"] == {"share": 50.0}
    assert seen["cfg"] == _ShadeConfig(images=str(tmp_path / "img"), colours=["red", "blue"], top=2, strict=False,
                                       weight=0.0, words=["red", "green", "blue"])  # fmt: skip
    assert "| model | share |" in out  # a plugin without columns: one per metric
    code, _, err = _run(capsys, *argv, "--top", "4")
    assert code == 2 and "argument --top: must be an integer in [1, 3], got 4" in err
    code, _, err = _run(capsys, *argv, "--colours", "pink")
    assert code == 2 and "argument --colours: invalid choice: 'pink'" in err
    code, _, err = _run(capsys, *argv[:-2])
    assert code == 2 and "the following arguments are required: --images" in err
    code, _, err = _run(capsys, *argv[:-1], str(tmp_path / "gone"))
    assert code == 2 and err.count("\n") == 1 and f"--images {tmp_path / 'gone'}: folder not found" in err


def test_a_plugin_may_not_take_a_shared_flag_or_a_command_name(scratch):
    @dataclasses.dataclass
    class Bad:
        device: str = "cpu"

    with pytest.raises(LiftError, match=r"config field\(s\) \['device'\] would take flags every `lift eval`"):
        register("bad", Bad)
    with pytest.raises(LiftError, match=r"'suite' is a `lift eval` command"):
        register("suite", _ShadeConfig)


def test_the_old_flags_still_work(tmp_path, monkeypatch, capsys):
    configs = _world(tmp_path)
    (tmp_path / "templates.txt").write_text("a {label} photo\n{label}\n")
    monkeypatch.setattr("lift.load", lambda *a, **k: StandIn())
    common = [
        "--checkpoint",
        "standin",
        "--no-cache",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
        "--json",
    ]
    code, out, _ = _run(capsys, "eval", "zeroshot", *common, "--images", configs["zeroshot"]["images"],
                        "--templates", str(tmp_path / "templates.txt"))  # fmt: skip
    assert code == 0
    alone = run_evaluator("zeroshot", StandIn(), configs["zeroshot"], ctx=EvalContext(**CTX))
    assert json.loads(out.strip().splitlines()[-1])["metrics"] == alone.metrics  # the file read into the list
    code, out, _ = _run(capsys, "eval", "retrieval", *common, "--images", configs["retrieval"]["images"],
                        "--annotations", configs["retrieval"]["annotations"], "--format", "flickr", "--protocol",
                        "all-captions", "--split", "test")  # fmt: skip
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["counts"]["texts"]["n"] == 3
    code, out, _ = _run(capsys, "eval", "sugarcrepe", *common, "--annotations", configs["sugarcrepe"]["annotations"],
                        "--images", configs["sugarcrepe"]["images"], "--subsets", "add_obj", "swap_att")  # fmt: skip
    assert code == 0 and set(json.loads(out.strip().splitlines()[-1])["metrics"]) == {
        "add_obj",
        "swap_att",
        "mean",
    }


def test_the_library_and_the_command_line_read_a_csv_as_flickr(tmp_path, monkeypatch, capsys):
    configs = _world(tmp_path)
    cfg = {"annotations": configs["retrieval"]["annotations"], "images": configs["retrieval"]["images"]}
    library = run_evaluator("retrieval", StandIn(), cfg, ctx=EvalContext(**CTX))  # was: parsed as COCO JSON
    assert library.config["format"] == "flickr" and library.counts["images"]["n"] == 2  # the test split
    monkeypatch.setattr("lift.load", lambda *a, **k: StandIn())
    code, _, _ = _run(capsys, "eval", "retrieval", "--checkpoint", "standin", "--no-cache", "--workers", "0",
                      "--device", "cpu", "--no-progress", "--out", str(tmp_path / "r.json"), "--annotations",
                      cfg["annotations"], "--images", cfg["images"])  # fmt: skip
    assert code == 0
    cli = read_results(tmp_path / "r.json")["retrieval"]
    assert cli.config == library.config and cli.metrics == library.metrics


def test_tables_and_compare_for_an_evaluator_without_declared_columns(scratch, tmp_path, capsys):
    @dataclasses.dataclass
    class Cfg:
        n: int = 1

    @register("tally", Cfg)
    def tally(model, cfg, ctx):
        """counts things"""
        metrics = {"alpha": 10.0 * cfg.n, "beta": 5.0, "held/alpha": 1.0}
        counts = {"items": {"n": 4, "skipped": 1}, "held/items": {"n": 1, "skipped": 0}}
        return make_result(
            "tally", model, cfg, ctx, metrics=metrics, counts=counts, started=time.perf_counter()
        )

    a = run_evaluator("tally", StandIn(), {"n": 1}, ctx=EvalContext(**CTX))
    b = run_evaluator("tally", StandIn(), {"n": 2}, ctx=EvalContext(**CTX))
    table = markdown_table(a)
    assert "| model | alpha | beta |" in table and "| standin model | 10.0 (n=4, skipped=1) |" in table
    assert "| standin model (held) | 1.0 | – |" in table
    from lift.evaluate.results import write_result

    write_result(tmp_path / "a.json", a)
    write_result(tmp_path / "b.json", b)
    code, out, _ = _run(capsys, "eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert code == 0 and "| Δ | +10.0 | +0.0 |" in out
    assert "| Δ | +10.0 | +0.0 |" in compare_table(a, b)


def test_one_task_with_a_missing_image_or_column_fails_before_any_model(tmp_path, monkeypatch, capsys):
    configs = _world(tmp_path)
    (tmp_path / "img" / "green.png").unlink()
    _no_model(monkeypatch)
    base = ["--checkpoint", "x", "--no-cache", "--workers", "0", "--no-progress"]
    sc = configs["sugarcrepe"]
    code, _, err = _run(
        capsys, "eval", "sugarcrepe", *base, "--annotations", sc["annotations"], "--images", sc["images"]
    )
    assert code == 2 and err.count("\n") == 1 and f"{tmp_path / 'img' / 'green.png'}: image not found" in err
    (tmp_path / "flickr.csv").write_text('raw,filename\n"[""red""]",red.png\n')
    rt = configs["retrieval"]
    code, _, err = _run(
        capsys, "eval", "retrieval", *base, "--annotations", rt["annotations"], "--images", rt["images"]
    )
    assert code == 2 and err.count("\n") == 1 and "flickr.csv: missing column(s) ['split']" in err
