"""Installing anywhere: the Makefile's CPU torch index, the GPU conda environment, the licence."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(reqs: list[str]) -> dict[str, str]:
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower(): r.replace(" ", "") for r in reqs}


def _pip_section(path: Path) -> list[str]:
    env = yaml.safe_load(path.read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def test_environment_gpu_yml_is_pyproject_with_the_gpu_extra():
    project = _project()
    extras = project["optional-dependencies"]
    pip = _pip_section(ROOT / "environment-gpu.yml")
    assert _names([p for p in pip if not p.startswith("-")]) == _names(project["dependencies"] + extras["gpu"] + extras["dev"])
    assert "-e ." in pip and not any("whl/cpu" in p for p in pip)


def test_environment_yml_names_the_cpu_torch_index():
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in _pip_section(ROOT / "environment.yml")


def test_the_makefile_pins_the_cpu_extras_torch():
    pin = re.search(r"^TORCH_CPU := (\S+)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert pin and pin.group(1) in _project()["optional-dependencies"]["cpu"]


def _dry_run(*args: str) -> str:
    # -n prints the commands without running one; -W pyproject.toml makes the install step due
    done = subprocess.run(["make", "-n", "-W", "pyproject.toml", *args], check=False, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("#")) + "\n"  # the commands


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_installs_torch_from_the_cpu_index_or_offline_and_passes_draft():
    cpu = _dry_run("book")
    assert "pip install --quiet --no-deps --extra-index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0'" in cpu
    assert "-e '.[cpu,dev]'" in cpu and "--extra-index-url" not in cpu.split("'torch==2.13.0'")[1]
    assert "book run --profile cpu\n" in cpu.replace(" \n", "\n") and "--draft" not in cpu
    offline = _dry_run("book", "TORCH_INDEX=")
    assert "--extra-index-url" not in offline and "--no-deps  'torch==2.13.0'" in offline
    gpu = _dry_run("book", "PROFILE=gpu", "DRAFT=1")
    assert "-e '.[gpu,dev]'" in gpu and "torch==2.13.0'" not in gpu and "whl/cpu" not in gpu
    assert "book run --profile gpu --draft" in gpu


def test_licence_is_mit_as_pyproject_says():
    text = (ROOT / "LICENSE").read_text()
    assert _project()["license"] == {"text": "MIT"}
    assert text.startswith("MIT License") and "Copyright (c) 2026 mlsearch authors" in text
