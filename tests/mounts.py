"""Real full and read-only disks for tests, without root: a private tmpfs in a user + mount namespace
(`unshare -rm`), mounted only for the one `python -m lift` process run inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _unshare_ok() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _unshare_ok(), reason="needs `unshare -rm` to mount a private tmpfs")


def lift_in_mount(mount: Path, options: str, args: list[str]) -> subprocess.CompletedProcess:
    """`python -m lift ARGS` with a private tmpfs mounted at `mount` (real ENOSPC / EROFS, no root needed)."""
    mount.mkdir(exist_ok=True)
    script = f'mount -t tmpfs -o {options} tmpfs "{mount}" && exec "$0" -m lift "$@"'
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, sys.executable, *args],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
