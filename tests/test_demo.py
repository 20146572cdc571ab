"""`lift demo --quick`: the README's main job, end to end through every real stage."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "lift", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result


def test_results_have_both_methods_every_task_and_both_regimes(demo_out):
    out, _ = demo_out
    results = json.loads((out / "results.json").read_text())
    tasks = (
        "add_obj",
        "add_att",
        "replace_obj",
        "replace_att",
        "replace_rel",
        "swap_obj",
        "swap_att",
        "mean",
    )
    for regime in ("short", "long"):
        for method in ("lift", "clip"):
            r = results["by_regime"][regime][method]
            assert set(tasks) <= set(r["sugarcrepe"])
            assert all(0.0 <= r["sugarcrepe"][t] <= 1.0 for t in tasks)
            assert 0.0 <= r["zeroshot"]["top1"] <= 1.0
            assert 0.0 <= r["retrieval"]["i2t_R@1"] <= 1.0
    assert results["lift"] == results["by_regime"]["short"]["lift"]
    assert set(results["config"]["profile"]["settings"]) == {
        "lift-short",
        "clip-short",
        "lift-long",
        "clip-long",
    }
    assert results["timings_s"]["total"] > 0
    # Real training happened: each run logged a loss curve and saved its final checkpoint.
    for run, summary in results["training"].items():
        assert (out / "runs" / run / "metrics.jsonl").read_text().strip(), run
        assert summary["steps"] > 0


def test_report_is_self_contained_and_states_the_outcome(demo_out):
    out, result = demo_out
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4  # figures and retrieval thumbnails are embedded
    assert 'src="report-assets' not in page and "http" not in page.split("<body>")[1]
    md = (out / "report.md").read_text()
    assert ("LIFT beat CLIP" in md) or ("CLIP beat LIFT" in md) or ("LIFT tied CLIP" in md)
    assert "short -> long captions" in md  # how the gap moves with caption length
    assert "lift train --method clip" in md and " --lr " in md
    results = json.loads((out / "results.json").read_text())
    held = results["by_regime"]["short"]["lift"]["sugarcrepe"]["heldout/mean"]
    assert f"{100 * held:.1f}" in md.split("## Held-out colour-shape pairs")[1].split("##")[0]
    assert "report.html" in result.stdout


def test_rerun_reuses_finished_stages(demo_out):
    out, _ = demo_out
    before = (out / "results.json").read_text()
    result = subprocess.run(
        [sys.executable, "-m", "lift", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    after = json.loads((out / "results.json").read_text())
    # Same numbers (nothing retrained or re-evaluated differently), and training was skipped quickly.
    strip = {k: v for k, v in json.loads(before).items() if k != "timings_s"}
    assert {k: v for k, v in after.items() if k != "timings_s"} == strip
    assert after["timings_s"]["train lift-short"] < 10
