"""Shell completion (issue 13 item 8): what bash and zsh get when the user presses Tab.

Each test runs voiceprep the way the completion scripts do: in a subprocess, with the
`_VOICEPREP_COMPLETE` protocol variables set; the bash test also sources the real script
in a real bash and calls its completion function.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_VOICEPREP", "COMP_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _voiceprep(**extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voiceprep"],
        env=_env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def bash_complete(line: str) -> list[str]:
    """What bash completes for the last word of `line` (ending in a space: a new word)."""
    words = line.split(" ")
    done = _voiceprep(
        _VOICEPREP_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(len(words) - 1)
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def zsh_complete(line: str) -> str:
    done = _voiceprep(_VOICEPREP_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS=line)
    assert done.returncode == 0, done.stderr
    return done.stdout


BACKENDS = ["azure", "cartesia", "command", "deepgram", "elevenlabs", "espeak", "google"]
BACKENDS += ["openai", "piper"]


def test_bash_completes_commands() -> None:
    assert bash_complete("voiceprep ca") == ["cache"]
    assert set(bash_complete("voiceprep ")) >= {"decode", "info", "warm", "say", "cache"}
    assert set(bash_complete("voiceprep cache ")) >= {"ls", "get", "prune", "verify"}


def test_bash_completes_options() -> None:
    assert bash_complete("voiceprep warm phrases.txt --ba") == ["--backend"]
    assert "--rate" in bash_complete("voiceprep decode --r")
    assert bash_complete("voiceprep decode x.mp3 --format ") == ["raw", "wav"]


def test_bash_completes_backend_names() -> None:
    assert bash_complete("voiceprep warm phrases.txt --backend ") == BACKENDS
    assert bash_complete("voiceprep say Hi -b c") == ["cartesia", "command"]
    assert bash_complete("voiceprep cache get Hi --backend dee") == ["deepgram"]


def test_zsh_completes_commands_options_and_backends() -> None:
    assert '"cache"' in zsh_complete("voiceprep ca")
    assert '"--backend":"TTS backend' in zsh_complete("voiceprep warm --ba")
    out = zsh_complete("voiceprep warm phrases.txt --backend ")
    assert all(f'"{name}"' in out for name in BACKENDS)
    assert '"espeak"' not in zsh_complete("voiceprep warm phrases.txt --backend g")


def test_real_bash_runs_the_shown_script() -> None:
    script = (
        "source <(voiceprep --show-completion) && "
        "COMP_WORDS=(voiceprep warm phrases.txt --backend go) && COMP_CWORD=4 && "
        '_voiceprep_completion voiceprep && printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", script], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["google"]


def test_zsh_gets_a_zsh_script() -> None:
    assert shutil.which("zsh"), "the tests use zsh: apt-get install zsh (as .ci/run does)"
    done = subprocess.run(
        ["zsh", "-c", "voiceprep --show-completion; :"],  # `; :`: no exec, zsh stays the parent,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "#compdef voiceprep" in done.stdout
    assert "_VOICEPREP_COMPLETE=complete_zsh" in done.stdout


def test_install_completion_writes_the_bash_script(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", "-c", "voiceprep --install-completion; :"],
        env=_env(HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "bash completion installed" in done.stdout
    installed = list(tmp_path.rglob("voiceprep*"))
    assert installed and "_VOICEPREP_COMPLETE=complete_bash" in installed[0].read_text()
    assert "source" in (tmp_path / ".bashrc").read_text()


def test_completion_loads_no_backend_module() -> None:
    code = (
        "import os, sys; os.environ.update(_VOICEPREP_COMPLETE='complete_bash', "
        "COMP_WORDS='voiceprep warm x --backend ', COMP_CWORD='4')\n"
        "from voiceprep.cli import main\n"
        "try:\n    main([])\nexcept SystemExit:\n    pass\n"
        "names = ('av', 'httpx', 'piper', 'voiceprep.backends.piper')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in done.stderr, done.stderr
    assert "piper" in done.stdout.split()
