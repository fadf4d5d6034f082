"""Packaging and documentation as a library user meets them (issue 13 items 6 and 7).

Building the sdist and wheel, `twine check` and the fresh-venv install run in .ci/run (they
need the build tools of the `dev` extra); these tests check what the installed package
declares and that the CLI reference is generated from the program itself.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib.metadata import metadata
from pathlib import Path

from packaging.requirements import Requirement

import voiceprep

ROOT = Path(__file__).resolve().parent.parent


def test_installed_metadata_names_license_urls_and_authors() -> None:
    meta = metadata("voiceprep")
    assert meta["Version"] == voiceprep.__version__  # one home: voiceprep.__version__
    assert meta["License-Expression"] == "MIT"
    assert "voiceprep/LICENSE" in (meta.get_all("License-File") or [])
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    assert meta["Author"] or meta["Author-email"]
    assert "MIT License" in (ROOT / "voiceprep" / "LICENSE").read_text()


def test_package_is_typed() -> None:
    assert (Path(voiceprep.__file__).parent / "py.typed").is_file()


def test_test_extra_holds_only_what_pytest_needs() -> None:
    requires = metadata("voiceprep").get_all("Requires-Dist") or []
    test = [r for r in requires if 'extra == "test"' in r]
    dev = [r for r in requires if 'extra == "dev"' in r]
    assert not any(r.startswith(("ruff", "mypy", "mkdocs", "twine", "build")) for r in test)
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group() for r in dev}  # type: ignore[union-attr]
    assert names >= {"ruff", "mypy", "build", "twine"}


def _reference_hook():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_generated_for_every_command_and_option() -> None:
    import typer

    from voiceprep.cli import app

    hook = _reference_hook()
    page = (ROOT / "docs" / "cli.md").read_text()
    assert hook.MARKER in page
    rendered = hook.on_page_markdown(page, page=None)
    assert hook.MARKER not in rendered

    def walk(command, path):  # type: ignore[no-untyped-def]
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    seen = 0
    for path, command in walk(typer.main.get_command(app), "voiceprep"):
        assert f"`{path}`" in rendered, f"{path} missing from the CLI reference"
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("-"):
                    assert opt in rendered, f"{path} {opt} missing"
        seen += 1
    assert seen >= 15  # decode, info, warm, say, backends, cache and its subcommands
    assert "--install-completion" in rendered and "--show-completion" in rendered


def test_constraints_pin_every_requirement_of_the_test_and_dev_environments() -> None:
    """constraints.txt (what tests/run.sh installs with) was regenerated after the last
    change of a requirement: every package pyproject.toml names for the core, `piper`,
    `test` and `dev` (and the extras they pull in) is pinned there, and nothing is unpinned."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted: set[str] = set()
    todo = [*project["dependencies"], *extras["piper"], *extras["test"], *extras["dev"]]
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.name == "voiceprep":
            todo += [r for extra in requirement.extras for r in extras[extra]]
        else:
            wanted.add(canonical(requirement.name))
    lines = [
        line.split(";")[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
    ]
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all("==" in pin for pin in pins), [pin for pin in pins if "==" not in pin]
    pinned = {canonical(pin.split("==")[0].split("[")[0]) for pin in pins}
    assert wanted <= pinned, sorted(wanted - pinned)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
