"""`lift bench eval` runs end to end on a few synth pairs (timings are printed, never asserted)."""

import json

from lift.cli import main


def test_bench_eval_prints_its_fields_and_both_ways_agree(capsys):
    assert main(["bench", "eval", "--pairs", "7", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ours_per_s", "reference_per_s", "speedup", "same_accuracy", "warm_per_s"):
        assert key in result
    assert result["pairs"] >= 7
    assert result["same_accuracy"] is True
    assert result["ours_accuracy"] == result["reference_accuracy"]
