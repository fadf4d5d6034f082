"""Third-party backends through the `voiceprep.backends` entry-point group, and the
`voiceprep backends` command.

The plugin (tests/plugin_fixture) is "installed" the way pip leaves a package: its module
and a `*.dist-info` directory (METADATA, entry_points.txt made from the fixture's own
pyproject.toml) in a directory on the import path, so importlib.metadata finds it exactly
as it finds any installed distribution.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array
from helpers import CLI

from voiceprep.backends import backend_entry_points, describe_backends, get_backend
from voiceprep.backends.retry import synthesize_with_retries
from voiceprep.errors import BackendNotFoundError, UsageError

FIXTURE = Path(__file__).parent / "plugin_fixture"
BUILTINS = {"piper", "espeak", "openai", "elevenlabs", "command"}


def install_distribution(
    site: Path, name: str, version: str, entry_points: dict[str, str], package: Path | None
) -> None:
    """Lay out a distribution in `site` as an installer would (module + dist-info)."""
    if package is not None:
        shutil.copytree(package, site / package.name)
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[voiceprep.backends]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (dist_info / "INSTALLER").write_text("voiceprep-tests\n", encoding="utf-8")


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory holding the chime plugin and a broken plugin."""
    site = tmp_path_factory.mktemp("site-packages")
    project = tomllib.loads((FIXTURE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    install_distribution(
        site,
        project["name"],
        project["version"],
        project["entry-points"]["voiceprep.backends"],
        FIXTURE / "voiceprep_chime",
    )
    install_distribution(
        site, "voiceprep-broken", "0.0.1", {"broken": "voiceprep_broken_missing:Backend"}, None
    )
    return site


@pytest.fixture
def installed(site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(site_dir))
    return site_dir


def _cli_env(site_dir: Path) -> dict[str, str]:
    """What a child process needs on top of the `cli` fixture's environment."""
    path = os.pathsep.join([str(site_dir), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, "NO_COLOR": "1"}


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVENLABS_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_plugin_is_found_with_the_builtins(installed: Path) -> None:
    eps = backend_entry_points()
    assert BUILTINS | {"chime", "broken"} <= set(eps)
    assert eps["chime"].dist is not None and eps["chime"].dist.name == "voiceprep-chime"
    assert eps["piper"].dist is not None and eps["piper"].dist.name == "voiceprep"


async def test_plugin_backend_synthesizes_through_the_retry_path(installed: Path) -> None:
    backend = get_backend("chime", options={"pitch": "523"})
    identity = backend.identity()
    assert (identity.name, identity.model, dict(identity.options)) == (
        "chime",
        "chime-1",
        {"pitch": 523.0},
    )
    audio = await synthesize_with_retries(backend, "Hello plugin", rate=24000, channels=1)
    samples = pcm_to_array(audio.to_pcm(rate=24000, channels=1), 1)[0]
    assert len(samples) / 24000 == pytest.approx(0.3 + 0.04 * len("Hello plugin"), abs=0.01)
    assert dominant_frequency(samples, 24000) == pytest.approx(523, abs=3)


def test_plugin_option_errors_are_usage_errors(installed: Path) -> None:
    with pytest.raises(UsageError, match="volume"):
        get_backend("chime", options={"volume": "11"})


def test_unknown_backend_names_the_installed_ones(installed: Path) -> None:
    with pytest.raises(BackendNotFoundError, match="chime") as info:
        get_backend("festival")
    assert info.value.exit_code == 2


def test_describe_reports_a_broken_plugin_without_failing(installed: Path) -> None:
    statuses = {s.name: s for s in describe_backends()}
    broken = statuses["broken"]
    assert not broken.usable
    assert broken.reason is not None and "voiceprep_broken_missing" in broken.reason
    assert statuses["chime"].usable and statuses["chime"].distribution == "voiceprep-chime"
    assert statuses["piper"].usable and statuses["piper"].voice == "en_US-joe-medium"


def test_backends_json_command_lists_every_backend(site_dir: Path, cli: CLI, no_keys: None) -> None:
    result = cli.process("backends", "--json", env=_cli_env(site_dir), timeout=60)
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert BUILTINS | {"chime", "broken"} <= set(rows)
    assert rows["chime"]["usable"] is True
    assert rows["chime"]["distribution"] == "voiceprep-chime"
    assert rows["broken"]["usable"] is False
    assert "cannot load" in rows["broken"]["reason"]
    assert rows["openai"]["usable"] is False
    assert rows["openai"]["reason"] == "OPENAI_API_KEY is not set"
    assert rows["elevenlabs"]["reason"] == "ELEVENLABS_API_KEY is not set"
    assert rows["espeak"]["usable"] is True
    assert rows["piper"]["usable"] is True and rows["piper"]["default"] is True
    assert "-O cmd=" in rows["command"]["reason"]


def test_backends_plain_output_when_piped(
    installed: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-never-be-printed-123456")
    result = cli("backends", env={"VOICEPREP_BACKEND": "espeak"})
    assert result.code == 0, result.err
    lines = result.text.splitlines()
    assert lines[0].split() == ["BACKEND", "USABLE", "FROM", "DETAIL"]
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert "(default)" in by_name["espeak"]
    assert by_name["openai"].split()[1] == "yes"  # the key is set…
    assert "sk-should-never" not in result.text + result.err  # …and never shown
    assert by_name["broken"].split()[1] == "no"
    assert "\x1b[" not in result.text  # no colour codes when piped


def test_backends_uses_config_file_options(
    installed: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A config file pointing openai at a self-hosted server makes it usable without a key.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (cli.cwd / "voiceprep.toml").write_text(
        '[backends.openai]\nbase_url = "http://127.0.0.1:8000/v1"\nmodel = "kokoro"\n'
        '[backends.chime]\npitch = "not-a-number"\n',
        encoding="utf-8",
    )
    result = cli("backends", "--json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert rows["openai"]["usable"] is True and rows["openai"]["model"] == "kokoro"
    assert rows["chime"]["usable"] is False and "pitch" in rows["chime"]["reason"]


def test_say_through_the_plugin_end_to_end(
    site_dir: Path, cli: CLI, no_keys: None, tmp_path: Path
) -> None:
    out = tmp_path / "chime.wav"
    args = ["say", "Ding dong", "--backend", "chime", "-O", "pitch=660", "-r", "16000"]
    args += ["-o", str(out), "--cache-dir", str(tmp_path / "c")]
    result = cli.process(*args, env=_cli_env(site_dir), timeout=60)
    assert result.code == 0, result.err
    from voiceprep.decoding import decode

    pcm = b"".join(decode(str(out), rate=16000, channels=1))
    samples = pcm_to_array(pcm, 1)[0]
    assert len(samples) / 16000 == pytest.approx(0.3 + 0.04 * len("Ding dong"), abs=0.01)
    assert dominant_frequency(samples, 16000) == pytest.approx(660, abs=3)


class _BuggyPlugin:
    """A third-party backend with a bug: it raises something that is no voiceprep error."""

    name = "buggy"

    async def synthesize(self, text: str, *, voice: str | None = None, rate: int, channels: int):  # type: ignore[no-untyped-def]
        raise KeyError("sample_rate")


async def test_a_plugin_bug_becomes_one_backend_error() -> None:
    from voiceprep.errors import BackendError

    with pytest.raises(BackendError, match=r"^buggy: KeyError: 'sample_rate'$") as info:
        await synthesize_with_retries(_BuggyPlugin(), "Hi", rate=24000, channels=1)  # type: ignore[arg-type]
    assert isinstance(info.value.__cause__, KeyError)  # kept for --debug
