from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short directory for runner sockets (Unix socket paths must stay under ~100 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="lsup-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)
