#!/usr/bin/env bash
# The README's test command: from a fresh Debian machine with Python 3.11, run as root, it
# installs the programs the tests use, the pinned test environment (constraints.txt), and
# runs the whole suite. `.ci/run` calls it too. Each step prints how long it took.
#
#   bash tests/run.sh [PYTEST ARGUMENTS]
#
# PYTHON (default python3) makes the virtual environment VENV (default .venv), unless one is
# active: then that one is used. EXTRAS (default piper,test) is what is installed from
# pyproject.toml; .ci/run adds dev (linters, build tools, the docs site).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

timed() {  # timed NAME COMMAND...: the command, then the seconds it took
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "[time] $name: $((SECONDS - start)) s"
}

# The programs the tests use, by the Debian package that has them: espeak-ng (the espeak
# backend), ffmpeg (the independent oracle and loudness meter), zsh (shell completion),
# Chromium and its WebDriver (pages, headless), wrk (serve's load tests), npm (Azurite).
programs() {
  local missing=""
  for pair in espeak-ng:espeak-ng ffmpeg:ffmpeg zsh:zsh chromium:chromium \
    chromedriver:chromium-driver wrk:wrk npm:npm; do
    command -v "${pair%%:*}" >/dev/null || missing="$missing ${pair#*:}"
  done
  # Debian's own Python makes virtual environments only with python3-venv installed.
  if [ -z "${VIRTUAL_ENV:-}" ] && ! "${PYTHON:-python3}" -c "import ensurepip" 2>/dev/null; then
    missing="$missing python3-venv"
  fi
  [ -z "$missing" ] && return
  if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: missing programs; as root: apt-get install$missing" >&2
    exit 1
  fi
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# Azurite, the Azure Storage emulator of tests/test_remote_gcs_azure.py (the GCS emulator
# is a Python package of the `test` extra). 3.36 and later need Node 21 or 22.
azurite() {
  local version=3.35.0
  if [ "$(azurite-blob --version 2>/dev/null)" != "$version" ]; then
    npm install --global --no-audit --no-fund --loglevel=error "azurite@$version" >/dev/null
  fi
}

# The test environment, every package at the version constraints.txt pins (plain pip reads
# it with -c; the extras' ranges in pyproject.toml stay open for users).
environment() {
  if [ -z "${VIRTUAL_ENV:-}" ]; then
    "${PYTHON:-python3}" -m venv "${VENV:-.venv}"
    # shellcheck disable=SC1091
    . "${VENV:-.venv}/bin/activate"
  fi
  python -m pip install -q --upgrade pip
  python -m pip install -q -c constraints.txt -e ".[${EXTRAS:-piper,test}]"
}

timed programs programs
timed azurite azurite
timed environment environment
# The environment stays active for the caller of `. tests/run.sh` and for .ci/run's steps.
timed tests python -m pytest -q -p no:cacheprovider "$@"
