"""The suite does not read the developer's shell: with every VOICEPREP_* variable that
docs/configuration.md lists set to a value other than its default, tests pass as they do
without them (conftest's `no_voiceprep_settings` clears them for every test)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A value other than the default for each documented variable (docs/configuration.md).
NON_DEFAULT = {
    "VOICEPREP_BACKEND": "espeak",
    "VOICEPREP_CACHE_DIR": "/nonexistent/voiceprep-developer-cache",
    "VOICEPREP_CHANNELS": "2",
    "VOICEPREP_DEBUG": "1",
    "VOICEPREP_JOBS": "3",
    "VOICEPREP_MAX_ENTRIES": "1",
    "VOICEPREP_MAX_SIZE": "1KB",
    "VOICEPREP_RATE": "16000",
    "VOICEPREP_REMOTE": "/nonexistent/voiceprep-developer-remote",
    "VOICEPREP_RETRIES": "0",
    "VOICEPREP_TIMEOUT": "1",
    "VOICEPREP_VOICE": "en-gb",
}
# Tests that read the environment a user's shell has (one failed with VOICEPREP_RATE,
# VOICEPREP_BACKEND and VOICEPREP_CHANNELS exported before the fixture).
SENSITIVE = [
    "tests/test_isolation.py::test_a_test_sees_no_voiceprep_variable",
    "tests/test_output_targets.py::test_on_a_terminal_each_command_says_what_it_wrote",
    "tests/test_config.py::test_defaults",
]


def test_every_documented_variable_has_a_value_here() -> None:
    documented = set(
        re.findall(r"VOICEPREP_[A-Z_]*[A-Z]", (ROOT / "docs/configuration.md").read_text())
    )
    assert documented == set(NON_DEFAULT)


def test_a_test_sees_no_voiceprep_variable() -> None:
    assert [name for name in os.environ if name.startswith("VOICEPREP_")] == []


def test_tests_pass_with_every_variable_set_to_a_non_default_value() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SENSITIVE],
        cwd=ROOT,
        env={**os.environ, **NON_DEFAULT},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_where_the_clone_lives_does_not_matter(tmp_path: Path) -> None:
    """A clone in a directory other users cannot enter (mode 700, as /root and `mktemp -d`
    are): the test whose worker drops to `nobody` still passes (every module that worker
    uses is imported before it drops its rights)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the worker drops to uid 65534")
    clone = tmp_path / "private"
    clone.mkdir(mode=0o700)
    for part in ("voiceprep", "tests", "pyproject.toml"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, clone / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, clone / part)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_cache_reliability.py::test_read_only_cache_is_fully_readable"],
        cwd=clone,
        env={**os.environ, "PYTHONPATH": str(clone)},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
