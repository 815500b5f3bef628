"""The README's two commands, .ci/run and the conda environment stay in step with pyproject."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _names(reqs: list[str]) -> dict[str, str]:
    out = {}
    for req in reqs:
        name = re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower()
        out[name] = req.replace(" ", "")
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    expected = _names(project["dependencies"] + extras["cpu"] + extras["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    got = _names([p for p in pip if not p.startswith("-")])  # -e ., --extra-index-url ...
    assert got == expected
    assert any(d.startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))


def test_cpu_extra_pins_the_local_torch_wheel():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "torch==2.13.0" in extras["cpu"] and "bitsandbytes" in _names(extras["cpu"])  # 4-bit runs on CPU
    assert {"vllm", "bitsandbytes"} <= set(_names(extras["gpu"]))


def test_readme_opens_with_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    commands = [line for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["make book", "make test"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]
