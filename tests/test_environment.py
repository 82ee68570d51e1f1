"""The conda environment and the pip project describe the same installation."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pip_section(env: dict) -> list[str]:
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one pip section"
    return sections[0]


def _normalise(requirement: str) -> str:
    """'Scikit_Learn >= 1.3' -> 'scikit-learn>=1.3' (PEP 503 name, no spaces)."""
    requirement = re.sub(r"\s+", "", requirement)
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower() + requirement[len(name) :]


def test_environment_pins_the_same_requirements_as_pyproject():
    project = {_normalise(r) for r in _pyproject()["project"]["dependencies"]}
    pip = {_normalise(r) for r in _pip_section(_environment()) if not r.startswith("-e")}
    assert pip == project, (
        f"only in environment.yml: {sorted(pip - project)}; "
        f"only in pyproject.toml: {sorted(project - pip)}"
    )


def test_environment_installs_the_project_itself():
    assert "-e ." in _pip_section(_environment())


def test_environment_python_is_one_the_project_supports():
    python = next(d for d in _environment()["dependencies"] if str(d).startswith("python"))
    version = tuple(int(p) for p in str(python).split("=")[-1].split(".")[:2])
    assert (3, 11) <= version <= (3, 13)
    assert _pyproject()["project"]["requires-python"] == ">=3.11,<3.14"  # nbgrader 0.9.6 needs 3.11


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


_STATED_RANGE = re.compile(r"Python (3\.\d+)\s*[–-]\s*(3\.\d+)")


def test_every_stated_python_range_is_the_one_requires_python_allows():
    """The README, the student bundle's README and the docs name the versions pyproject allows."""
    low, high = re.fullmatch(
        r">=3\.(\d+),<3\.(\d+)", _pyproject()["project"]["requires-python"]
    ).groups()
    allowed = (f"3.{low}", f"3.{int(high) - 1}")
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "grader/bundle_files/README.md"]
    pages += sorted((ROOT / "docs").glob("*.md"))
    stated = {
        (page.relative_to(ROOT).as_posix(), m.groups())
        for page in pages
        for m in _STATED_RANGE.finditer(page.read_text(encoding="utf-8"))
    }
    assert stated, "no page states the supported Python versions"
    assert {s for s in stated if s[1] != allowed} == set(), f"pyproject allows {allowed}"
    for env in (ROOT / "environment.yml", ROOT / "grader/bundle_files/environment.yml"):
        python = re.search(r"^\s*- python=(3\.\d+)\s*$", env.read_text(), re.M).group(1)
        assert _version(allowed[0]) <= _version(python) <= _version(allowed[1]), (env, python)


def test_test_and_lint_tools_are_dev_extras_not_runtime_dependencies():
    runtime = {
        re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in _pyproject()["project"]["dependencies"]
    }
    dev = {
        re.match(r"[A-Za-z0-9_.-]+", r).group(0)
        for r in _pyproject()["project"]["optional-dependencies"]["dev"]
    }
    assert {"pytest", "hypothesis", "ruff"} <= dev
    assert not runtime & {"pytest", "hypothesis", "ruff", "psutil"}


def test_the_makefile_installs_the_dev_and_browser_extras():
    assert 'pip install -q -e ".[dev,browser]"' in (ROOT / "Makefile").read_text()


def test_torch_is_pinned_to_the_cpu_wheel_version():
    assert "torch==2.13.0" in _pyproject()["project"]["dependencies"]
