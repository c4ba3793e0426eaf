"""The layers of DESIGN.md section 2, as the import-linter contracts in pyproject.toml state them.

The contracts hold for the code as it is, and they bite: the same tree with one import that breaks a layer
fails the check and names the contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("croco", "bot", "web", "sync", "storage")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)


def copy_of_the_code(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, line: str) -> None:
    text = module.read_text()
    marker = "from __future__ import annotations\n"
    module.write_text(text.replace(marker, f"{marker}\n{line}\n", 1) if marker in text else f"{line}\n{text}")


def test_the_code_keeps_every_layer_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("sync/engine.py", "import web.api  # noqa", "sync never imports"),
    ("sync/booking.py", "import aiohttp  # noqa", "sync never imports"),
    ("sync/providers/caldav/ical.py", "from storage.db import Database  # noqa", "Providers: storage enumerations only"),
    ("sync/providers/base.py", "import sync.plan  # noqa", "Providers: storage enumerations only"),
    ("storage/models.py", "import sync.events  # noqa", "storage imports nothing above it"),
])
def test_an_import_against_the_layers_fails_the_check(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = copy_of_the_code(tmp_path)
    add_import(tree / module, line)
    result = lint_imports(tree)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert any(contract in row for row in broken), result.stdout
