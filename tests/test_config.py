"""Configuration: flags > VOICEPREP_* environment > voiceprep.toml / [tool.voiceprep] > defaults."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

from voiceprep.config import find_config_file, read_config_file, resolve_settings
from voiceprep.errors import ConfigError, UsageError


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with no VOICEPREP_* variables set."""
    for name in list(os.environ):
        if name.startswith("VOICEPREP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults(project: Path) -> None:
    settings = resolve_settings({})
    assert settings.cache_dir == Path(platformdirs.user_cache_dir("voiceprep"))
    assert (settings.backend, settings.voice, settings.options) == ("piper", None, {})
    assert (settings.rate, settings.channels) == (24000, 1)
    assert (settings.jobs, settings.retries, settings.timeout) == (4, 3, 60.0)
    assert settings.max_entries is None and settings.max_size is None


@pytest.mark.parametrize(
    ("flag", "env", "file", "expected"),
    [
        (8000, "16000", 22050, 8000),  # the flag wins
        (None, "16000", 22050, 16000),  # then the environment
        (None, None, 22050, 22050),  # then the file
        (None, None, None, 24000),  # then the default
    ],
)
def test_precedence_for_rate(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: int | None,
    env: str | None,
    file: int | None,
    expected: int,
) -> None:
    if env is not None:
        monkeypatch.setenv("VOICEPREP_RATE", env)
    if file is not None:
        (project / "voiceprep.toml").write_text(f"rate = {file}\n")
    assert resolve_settings({"rate": flag}).rate == expected


def test_every_setting_from_the_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "VOICEPREP_CACHE_DIR": str(project / "c"),
        "VOICEPREP_BACKEND": "espeak",
        "VOICEPREP_VOICE": "en-us",
        "VOICEPREP_RATE": "16000",
        "VOICEPREP_CHANNELS": "2",
        "VOICEPREP_JOBS": "8",
        "VOICEPREP_RETRIES": "0",
        "VOICEPREP_TIMEOUT": "2.5",
        "VOICEPREP_MAX_ENTRIES": "100",
        "VOICEPREP_MAX_SIZE": "2MiB",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = resolve_settings({})
    assert (s.cache_dir, s.backend, s.voice) == (project / "c", "espeak", "en-us")
    assert (s.rate, s.channels, s.jobs, s.retries, s.timeout) == (16000, 2, 8, 0, 2.5)
    assert (s.max_entries, s.max_size) == (100, 2 * 1024 * 1024)


def test_pyproject_tool_table(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "agent"\n\n[tool.voiceprep]\nbackend = "espeak"\n'
        'cache-dir = "prompts-cache"\nmax_size = "500MB"\n'
        "[tool.voiceprep.backends.espeak]\nspeed = 150\n"
    )
    s = resolve_settings({})
    assert s.backend == "espeak"
    assert s.cache_dir == project / "prompts-cache"  # relative to where voiceprep runs
    assert s.max_size == 500_000_000
    assert s.options == {"speed": "150"}


def test_voiceprep_toml_wins_over_pyproject(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.voiceprep]\nbackend = "espeak"\n')
    (project / "voiceprep.toml").write_text('backend = "openai"\n')
    path, table = find_config_file()
    assert path == project / "voiceprep.toml"
    assert resolve_settings({}).backend == "openai"


def test_pyproject_without_tool_table_is_no_config(project: Path) -> None:
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_config_file() == (None, {})
    assert resolve_settings({}).backend == "piper"


def test_backend_options_layering(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "voiceprep.toml").write_text(
        'backend = "openai"\n'
        '[options]\nspeed = 1.5\nformat = "wav"\n'
        '[backends.openai]\nmodel = "tts-1-hd"\nstream = true\n'
        '[backends.elevenlabs]\nmodel = "eleven_flash_v2_5"\n'
    )
    s = resolve_settings({"options": {"speed": "0.9"}})
    # [options] < [backends.<the chosen backend>] < -O; other backends' tables unused.
    assert s.options == {"speed": "0.9", "format": "wav", "model": "tts-1-hd", "stream": "true"}
    monkeypatch.setenv("VOICEPREP_BACKEND", "elevenlabs")
    assert resolve_settings({}).options == {
        "speed": "1.5",
        "format": "wav",
        "model": "eleven_flash_v2_5",
    }


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('api_key = "sk-123"\n', "looks like a secret"),
        ('[backends.openai]\napi_key = "sk-123"\n', "looks like a secret"),
        ('[options]\nelevenlabs_token = "x"\n', "looks like a secret"),
        ("cache_dri = 'x'\n", "unknown key 'cache_dri'"),
        ("options = 3\n", "'options' must be a table"),
        ("[backends.openai.nested]\nx = 1\n", "must be a single value"),
        ("rate = [1\n", "invalid TOML"),
    ],
)
def test_bad_config_file_names_the_file(project: Path, toml: str, message: str) -> None:
    (project / "voiceprep.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message) as info:
        resolve_settings({})
    assert str(project / "voiceprep.toml") in str(info.value)
    assert "sk-123" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "RATE",
            "7999",
            "VOICEPREP_RATE: invalid rate '7999': expected a sample rate in Hz, 8000–192000",
        ),
        ("RATE", "fast", "VOICEPREP_RATE: invalid rate 'fast': expected a sample rate in Hz"),
        ("CHANNELS", "3", r"VOICEPREP_CHANNELS: invalid channels '3': expected 1 \(mono\) or 2"),
        ("JOBS", "0", "VOICEPREP_JOBS: invalid jobs '0': expected a whole number, 1 or more"),
        ("RETRIES", "-1", "VOICEPREP_RETRIES: invalid retries '-1': expected a whole number, 0 or"),
        ("TIMEOUT", "0", "VOICEPREP_TIMEOUT: invalid timeout '0': expected a number of seconds"),
        ("MAX_SIZE", "lots", "VOICEPREP_MAX_SIZE: invalid max_size 'lots': expected a size such"),
        ("MAX_ENTRIES", "0", "VOICEPREP_MAX_ENTRIES: invalid max_entries '0': expected a whole"),
    ],
)
def test_bad_environment_value_names_the_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"VOICEPREP_{name}", value)
    with pytest.raises(UsageError, match=message):
        resolve_settings({})


def test_bad_file_value_names_the_file_and_key(project: Path) -> None:
    (project / "voiceprep.toml").write_text("channels = 2.0\n")
    with pytest.raises(
        UsageError,
        match=r"voiceprep\.toml: key 'channels': invalid channels 2\.0: expected 1 \(mono\)",
    ):
        resolve_settings({})


def test_empty_environment_variable_is_not_set(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "voiceprep.toml").write_text('backend = "espeak"\n')
    monkeypatch.setenv("VOICEPREP_BACKEND", "")
    assert resolve_settings({}).backend == "espeak"


def test_read_config_file_from_another_directory(tmp_path: Path) -> None:
    (tmp_path / "voiceprep.toml").write_text("jobs = 2\n")
    assert read_config_file(tmp_path) == {"jobs": 2}


def test_warm_follows_the_precedence_end_to_end(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from voiceprep.cache import AudioCache
    from voiceprep.cli import main

    (project / "pyproject.toml").write_text(
        '[tool.voiceprep]\nbackend = "espeak"\ncache-dir = "prompt-cache"\nrate = 16000\n'
        "[tool.voiceprep.backends.espeak]\nspeed = 200\n"
    )
    (project / "p.txt").write_text("Welcome back.\n")

    def warm(*flags: str) -> None:
        with pytest.raises(SystemExit) as info:
            main(["warm", "p.txt", *flags])
        assert info.value.code == 0, capsys.readouterr().err

    warm()  # the file
    monkeypatch.setenv("VOICEPREP_RATE", "8000")
    warm()  # the environment over the file
    warm("-r", "22050", "-O", "speed=120")  # flags over both
    with AudioCache(project / "prompt-cache") as cache:
        found = sorted((e.rate, e.backend, e.options.get("speed")) for e in cache.entries())
    assert [(rate, backend) for rate, backend, _ in found] == [
        (8000, "espeak"),
        (16000, "espeak"),
        (22050, "espeak"),
    ]
    assert [str(speed) for *_, speed in found] == ["200", "200", "120"]
