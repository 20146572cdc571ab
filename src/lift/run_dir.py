"""The run folder of `lift train`: started new, resumed, or (when asked) started again; never two
runs mixed in one folder, never a folder lift did not make replaced.

    RUN/.lift-output.json   marker: this folder is a lift run
    RUN/config.json         the TrainConfig
    RUN/metrics.jsonl       one row per logged step (rows past the resumed step are dropped)
    RUN/checkpoints/        see lift.checkpoint
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from lift import checkpoint as ckpt
from lift.atomic import atomic_write
from lift.data.paths import is_url
from lift.errors import LiftError
from lift.outputs import check_output_folder, check_replaceable, read_marker, write_marker

KIND = "run"
METRICS = "metrics.jsonl"


def is_run_folder(run: Path) -> bool:
    """A lift run: marked as one, or (runs written before markers existed) a config and checkpoints."""
    marker = read_marker(run)
    if marker is not None:
        return marker["kind"] == KIND
    return (run / "config.json").is_file() and (run / "checkpoints").is_dir()


def check_run_dir(run: Path, *, resume: str | None, overwrite: bool, sources: Iterable[str]) -> bool:
    """Refuse, before any work, a `run` that would mix two runs or replace what lift did not make.

    Returns True when `run` is an existing run to be deleted and started again (`overwrite`).
    """
    if resume and overwrite:
        raise LiftError("--resume and --overwrite contradict each other: continue the run, or start it again")
    if not check_output_folder(run):
        return False
    if resume:
        if not is_run_folder(run):
            raise LiftError(
                f"--out {run}: is not a lift run folder; nothing to resume. Choose the run's folder"
            )
        return False
    if overwrite:
        check_replaceable(run, kind=KIND, sources=[s for s in sources if not is_url(s)])
        return True
    if is_run_folder(run):
        raise LiftError(
            f"--out {run}: already holds a run; pass --resume latest to continue it, or --overwrite to "
            "delete it and start again"
        )
    raise LiftError(f"--out {run}: exists and is not empty; choose a new folder for the run")


def open_run_dir(run: Path, *, replace: bool) -> None:
    """Create (or, when `replace`, empty and recreate) the run folder and mark it; main process only."""
    if replace:
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    if read_marker(run) is None:
        write_marker(run, KIND)
    ckpt.clean_stale_temps(run)


def resume_point(run: Path, resume: str | None) -> Path | None:
    """The checkpoint to continue from: `latest` -> the run's newest complete one (None: start fresh);
    a path -> that checkpoint (or that run's newest)."""
    if resume is None:
        return None
    if resume == "latest":
        return ckpt.latest_checkpoint(run)
    return ckpt.resolve_checkpoint(resume)


def truncate_metrics(run: Path, step: int) -> None:
    """Keep the rows up to `step` (later ones are logged again); a torn last line (a kill mid-write) is
    dropped, a damaged line before it is refused."""
    path = run / METRICS
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    keep = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            row_step = int(row["step"])
        except (ValueError, KeyError, TypeError):
            if i == len(lines) - 1:
                break  # the row being written when the job was killed
            raise LiftError(
                f"{path}: line {i + 1} is not a metrics row ({line[:60]!r}); repair or remove it"
            ) from None
        if row_step <= step:
            keep.append(line)
    with atomic_write(path, "w") as f:
        f.write("".join(r + "\n" for r in keep))
