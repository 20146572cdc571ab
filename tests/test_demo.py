"""`lift demo` on two world seeds at the quick profile, with a LIFT+ row for short captions and none
for long ones: results.json's intervals and rows, and a report that says what is real (the seeds that
ran, which differences are distinguishable from zero, the frozen encoder's limits beside each task)."""

import copy
import dataclasses
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import lift.demo.pipeline as pipeline
import lift.demo.variants as variants
from lift.cli import build_parser
from lift.demo import report_commands, report_figures, report_words, run_demo
from lift.demo.pipeline import DemoConfig
from lift.demo.report import write_report
from lift.demo.stats import Interval, verdict

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PLUS = "lift-short-mlp"  # LIFT+ for short captions in these tests (the shipped PLUS may name none)


@pytest.fixture(scope="module")
def patched():
    """LIFT+ = the MLP-adapter variant with short captions (with lift-short's settings), none with long."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(variants.PLUS, "short", variants.BY_NAME[PLUS])
        mp.setitem(variants.PLUS, "long", None)
        quick = pipeline.PROFILES["quick"]
        settings = {**quick.settings, PLUS: quick.settings["lift-short"]}
        mp.setitem(pipeline.PROFILES, "quick", dataclasses.replace(quick, settings=settings))
        yield mp


@pytest.fixture(scope="module")
def demo(patched, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    results = run_demo(DemoConfig(out=str(out), profile="quick", seeds=2))
    return out, results


def _md(out: Path) -> str:
    return (out / "report.md").read_text()


def _section(md: str, heading: str) -> str:
    return md.split(heading, 1)[1].split("\n## ", 1)[0]


def test_results_have_two_unseen_seeds_three_rows_and_intervals(demo):
    out, results = demo
    saved = json.loads((out / "results.json").read_text())
    assert saved == {**results, "timings_s": saved["timings_s"]}  # the report's time is added after
    assert results["seeds"] == [0, 3]  # 1 and 2 are the tuning seeds: skipped
    assert results["rows"] == {"short": ["clip", "lift", "plus"], "long": ["clip", "lift"]}
    assert results["recipes"]["short"]["name"] == PLUS and results["recipes"]["long"] is None
    for regime, rows in results["rows"].items():
        for row in rows:
            for metric, m in results["metrics"][regime][row].items():
                assert len(m["per_seed"]) == 2 and m["std"] is not None, (regime, row, metric)
    assert set(results["paired"]["short"]) == {"lift-clip", "plus-clip", "plus-lift"}
    assert set(results["paired"]["long"]) == {"lift-clip"}
    for regime, comparisons in results["paired"].items():
        for comparison, entries in comparisons.items():
            assert {"sugarcrepe/mean", "zeroshot/top1", "retrieval/R@1", "heldout/sugarcrepe/mean"} <= set(
                entries
            )
            for metric, e in entries.items():
                items, seeds = e["items"], e["seeds"]
                assert items["low"] <= items["estimate"] <= items["high"], (regime, comparison, metric)
                assert seeds["low"] is not None and seeds["low"] <= seeds["estimate"] <= seeds["high"]
                a, b = comparison.split("-")
                rows = results["metrics"][regime]
                diffs = [x - y for x, y in zip(rows[a][metric]["per_seed"], rows[b][metric]["per_seed"])]
                assert seeds["estimate"] == pytest.approx(sum(diffs) / 2)
                assert e["verdict"] == verdict(Interval(**items), Interval(**seeds))
    shift = results["shift"]["lift-clip"]["change"]["items"]
    assert shift["low"] <= shift["estimate"] <= shift["high"]
    for seed in ("0", "3"):
        assert set(results["training"][seed]) == {
            "clip-short",
            "lift-short",
            "plus-short",
            "clip-long",
            "lift-long",
        }
        assert all(t["steps"] > 0 for t in results["training"][seed].values())
    # the LIFT+ run is the recipe's: its adapter was trained
    config = json.loads((out / "seed-3" / "runs" / "plus-short" / "config.json").read_text())
    assert config["options"]["text_adapter"] == "mlp"


def test_report_opening_names_the_seeds_and_the_rows(demo):
    out, results = demo
    opening = _md(out).split("\n## ", 1)[0]
    assert "World seeds 0 and 3" in opening and "tuned on seeds 1 and 2, never on these" in opening
    assert "seed-0" not in opening
    recipe = results["recipes"]["short"]["recipe"]
    assert f"**LIFT+** with short captions: {recipe} (variant `{PLUS}`)" in opening
    assert "No LIFT+ with long captions: no variant beat the paper's recipe on the tuning seeds" in opening


CLAUSES = {
    "both": r"Distinguishable from zero:",
    "items": r"Distinguishable on these test items [^:]*:",
    "none": r"Not distinguishable from zero:",
}


def _clause_of(line: str, name: str) -> str:
    """Which clause of a summary line names metric `name`: the last clause opened before it."""
    at = re.search(rf"(?:: |; ){re.escape(name)}(?: \(|;|\.)", line)
    assert at, (name, line)
    opened = {
        k: [m.start() for m in re.finditer(rx, line) if m.start() < at.start()] for k, rx in CLAUSES.items()
    }
    return max((pos[-1], k) for k, pos in opened.items() if pos)[1]


def test_report_says_which_differences_are_distinguishable(demo):
    out, results = demo
    real = _section(_md(out), "## What is real")
    for regime, comparisons in results["paired"].items():
        part = _section(real, f"### {regime.capitalize()} captions").split("\n### ")[0]
        for comparison, entries in comparisons.items():
            label = report_words.comparison_label(comparison)
            line = next(x for x in part.splitlines() if x.startswith(f"**{label}:** "))
            for metric in report_words.HEADLINE:
                e = entries[metric]
                est = e["items"]["estimate"]
                name = report_words.LABEL[metric]
                # the line per metric: estimate with its sign, both intervals, the verdict
                assert f"{name}: {label} = {report_words.signed(est)} points" in part
                assert e["verdict"] in part
                # by hand: distinguishable when both 95% intervals exclude zero
                items_out = e["items"]["low"] > 0 or e["items"]["high"] < 0
                seeds_out = e["seeds"]["low"] > 0 or e["seeds"]["high"] < 0
                expected = "both" if items_out and seeds_out else "items" if items_out else "none"
                assert _clause_of(line, name) == expected, (regime, comparison, metric, line)
    shift = _section(real, "### From short to long captions")
    change = results["shift"]["lift-clip"]["change"]
    assert f"so it moves {report_words.signed(change['items']['estimate'])} points toward" in shift or (
        change["items"]["estimate"] == 0 and "does not move" in shift
    )
    assert report_words.bounds(change["seeds"]) in shift


def test_tables_put_the_encoders_separation_beside_each_task_and_its_ceiling_beside_retrieval(demo):
    out, results = demo
    md = _md(out)
    sc = _section(md, "## SugarCrepe-style composition")
    short = _section(sc, "### Short captions").split("\n### ")[0]
    probe = results["probe"]["short"]["short"]["sugarcrepe"]
    for task, fig in probe.items():
        row = next(x for x in short.splitlines() if x.startswith(f"| {task} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:3] == [f"{fig['close_pct']:.1f}", f"{fig['mean_cos']:.3f}"], row  # beside the task
        m = results["metrics"]["short"]["lift"][f"sugarcrepe/{task}"]
        assert f"{m['mean']:.1f} ± {m['std']:.1f}" in cells  # LIFT: mean ± std over the two seeds
    assert "LIFT+" in short.splitlines()[1] or "LIFT+" in short  # the third row's column
    retrieval = _section(md, "## Zero-shot classification and retrieval")
    ceiling = results["probe"]["short"]["short"]["retrieval"]
    n = ceiling["close_other_text"]
    n = f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"
    assert f"{n} of {ceiling['captions']:.0f} test captions have another image's caption" in retrieval
    e = results["paired"]["long"]["lift-clip"]["retrieval/R@1"]
    assert report_words.bounds(e["items"]) in retrieval and report_words.bounds(e["seeds"]) in retrieval
    held = _section(md, "## Held-out colour-shape pairs")
    m = results["metrics"]["long"]["clip"]["heldout/sugarcrepe/mean"]
    assert f"{m['mean']:.1f} ± {m['std']:.1f}" in held
    breadth = _section(md, "## Winoground, MMVP-style pairs")
    for metric in ("winoground/group", "mmvp/accuracy", "long-retrieval/R@1"):
        m = results["metrics"]["short"]["plus"][metric]
        assert f"{m['mean']:.1f} ± {m['std']:.1f}" in breadth
    paired = _section(md, "## Paired differences")
    assert paired.count("| short |") == sum(len(e) for e in results["paired"]["short"].values())


def test_reproduce_commands_run_through_the_cli_parser(demo):
    out, _ = demo
    block = _section(_md(out), "## Reproduce each number").split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(x.strip()) for x in block.splitlines() if x.strip().startswith("lift ")]
    for argv in commands:
        build_parser(argv[1]).parse_args(argv[1:])  # an unknown flag or a bad value exits (fails)
    text = block
    for seed in (0, 3):
        assert f"lift synth {out}/seed-{seed}/world --seed {seed}" in text
        assert f"--out {out}/seed-{seed}/runs/plus-short" in text
    trains = [" ".join(a) for a in commands if a[1] == "train"]
    assert len(trains) == 10
    assert all("--captions" in t for t in trains if "--method clip" in t)
    assert all("--store" in t for t in trains if "--method lift" in t)
    assert sum("--text-adapter mlp" in t for t in trains) == 2
    assert {a[2] for a in commands if a[1] == "eval"} >= {"sugarcrepe", "zeroshot", "retrieval", "winoground"}


def test_report_html_is_self_contained_and_renders(demo, tmp_path):
    out, _ = demo
    page = (out / "report.html").read_text()
    body = page.split("<body>", 1)[1]
    assert body.count("data:image/png;base64,") >= 2 + 3 * 3  # figures + each run's top-3 thumbnails
    assert 'src="report-assets' not in page and "http" not in body
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): the page was not rendered")
    shot = tmp_path / "report.png"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check-report-html.sh"), str(out / "report.html"), str(shot)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 20_000


def test_evaluations_during_training_are_drawn_when_a_run_logged_them(demo, tmp_path):
    out, results = demo
    assert "No run logged evaluations during training" in _md(out)
    copy_out = tmp_path / "demo"
    shutil.copytree(out, copy_out, ignore=shutil.ignore_patterns("stores", "train", "*.sqlite"))
    log = copy_out / "seed-0" / "runs" / "lift-short" / "metrics.jsonl"
    with log.open("a") as f:
        for step, acc in ((5, 52.0), (10, 58.5), (15, 61.0)):
            f.write(
                json.dumps({"step": step, "eval": {"sugarcrepe/mean": acc, "zeroshot/top1": acc / 2}}) + "\n"
            )
    assert report_figures.eval_curves(copy_out / "seed-3", 3) is None  # no eval rows there
    assert report_figures.eval_curves(copy_out / "seed-0", 0)[:8] == b"\x89PNG\r\n\x1a\n"
    write_report(copy_out, results)
    md = (copy_out / "report.md").read_text()
    assert "![Evaluation during training](report-assets/eval-curves.png)" in md
    assert (copy_out / "report-assets" / "eval-curves.png").is_file()
    assert 'alt="Evaluation during training"' in (copy_out / "report.html").read_text()
    # the eval rows carry no loss or speed: the loss curves and the cost per step still come out
    assert "| lift-short |" in _section(md, "## Cost per step")


def test_one_seed_is_labelled_as_such(demo):
    """The same results cut to world seed 0 alone: no seed intervals, and the report says so."""
    _, results = demo
    one = copy.deepcopy(results)
    one["seeds"] = [0]
    for rows in one["metrics"].values():
        for metrics in rows.values():
            for m in metrics.values():
                m.update(mean=m["per_seed"][0], std=None, per_seed=m["per_seed"][:1])
    for comparisons in one["paired"].values():
        for entries in comparisons.values():
            for e in entries.values():
                e["seeds"] = {"estimate": e["seeds"]["estimate"], "low": None, "high": None}
                e["verdict"] = verdict(Interval(**e["items"]), Interval(**e["seeds"]))
    opening = " ".join(report_words.opening(one, tuning_seeds=(1, 2)))
    assert "World seed 0**" in opening and "never on this one" in opening
    assert "One seed: training noise is not measured" in opening
    for _, parts in report_words.headline(one):
        for line, lines in parts:
            assert all("one seed: training noise not measured" in x for x in lines)
            # one seed never makes a difference "distinguishable from zero" outright: items only, at most
            assert "Distinguishable from zero:" not in line


def test_store_commands_rebuild_transformed_and_reembedded_stores():
    seed = Path("demo-out/seed-4")
    pca = report_commands.store_commands(seed, "short-pca96")
    assert pca == [
        "lift store transform demo-out/seed-4/stores/short --out demo-out/seed-4/stores/short-pca96 --pca 96"
    ]
    white = report_commands.store_commands(seed, "short-whiten")[-1]
    cls = report_commands.store_commands(seed, "short-cls")[-1]
    assert white.endswith("--whiten") and "--pooling cls" in cls and cls.startswith("lift embed ")
    for command in (*pca, white, cls, *report_commands.store_commands(seed, "short-int8")):
        argv = shlex.split(command)
        build_parser(argv[1]).parse_args(argv[1:])


def test_signs_are_never_rounded_away_and_tied_means_exactly_zero():
    assert report_words.signed(-0.03) == "-0.03" and report_words.signed(0.04) == "+0.04"
    assert report_words.signed(-1.26) == "-1.3" and report_words.signed(0.0) == "0.0"
    assert report_words.who("lift-clip", 0.0) == "LIFT tied CLIP"
    assert report_words.who("lift-clip", -0.001) == "CLIP ahead"
    assert report_words.who("plus-lift", 0.2) == "LIFT+ ahead"


def test_rerun_reuses_finished_stages(demo, patched):
    out, before = demo
    after = run_demo(DemoConfig(out=str(out), profile="quick", seeds=2))
    strip = lambda r: {k: v for k, v in r.items() if k != "timings_s"}  # noqa: E731
    assert strip(after) == strip(before)  # same numbers: nothing retrained or re-evaluated differently
    trains = {k: v for k, v in after["timings_s"].items() if ": train " in k}
    assert len(trains) == 10 and max(trains.values()) < 15, trains
