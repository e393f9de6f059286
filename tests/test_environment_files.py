"""requirements.txt and environment.yml list the same packages with the same pins."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirement_lines(lines):
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, marker = line.partition(";")
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", spec.strip())
        assert match, f"unparsable requirement line: {line!r}"
        out[(match.group(1).lower(), marker.strip().replace("'", '"'))] = match.group(2).strip()
    return out


def test_requirements_and_environment_agree():
    req = _requirement_lines((ROOT / "requirements.txt").read_text().splitlines())
    env_text = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(env_text) if line.strip() == "- pip:")
    pip_lines = [
        line.strip()[2:]
        for line in env_text[start + 1 :]
        if line.strip().startswith("- ") and not line.strip().startswith("#")
    ]
    assert "-e ." in pip_lines  # `conda env create` installs the project too: one step
    env = _requirement_lines([line for line in pip_lines if line != "-e ."])
    assert req == env
    assert any(name == "tensorflow-cpu" for name, _ in req)


def test_every_requirement_line_says_who_needs_it():
    text = (ROOT / "requirements.txt").read_text().splitlines()
    for line in text:
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"requirements.txt line without a comment: {line!r}"


def test_every_pin_is_compatible_release():
    req = _requirement_lines((ROOT / "requirements.txt").read_text().splitlines())
    for (name, _), pin in req.items():
        assert pin.startswith("~="), f"{name} is pinned as {pin!r}; use a compatible pin (~=)"


def test_committed_notebooks_carry_no_outputs():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name[:2] for p in notebooks] == ["01", "02", "03", "04"]
    for path in notebooks:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, (
                    f"{path.name} carries outputs: strip them (nbstripout or `pre-commit run`)"
                )


def test_pyproject_dependencies_have_the_requirements_pins():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    req = _requirement_lines((ROOT / "requirements.txt").read_text().splitlines())
    for name, marker in _requirement_lines(deps):
        assert (name, marker) in req, f"{name} is a dependency in pyproject.toml but not in requirements.txt"
        assert _requirement_lines(deps)[(name, marker)] == req[(name, marker)], f"{name}: pins differ"
    assert ("filelock", "") in _requirement_lines(deps), "flowerlib.locks needs filelock at run time"


def test_python_floor_is_the_same_everywhere():
    """3.11.4 is the first 3.11 whose tarfile has extraction filters (flowerlib.download)."""
    import tomllib

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11.4"
    assert "sys.version_info >= (3, 11, 4)" in (ROOT / "Makefile").read_text()
    assert "python>=3.11.4" in (ROOT / "environment.yml").read_text()


def test_every_third_party_import_of_flowerlib_is_declared():
    import ast
    import importlib.metadata
    import sys
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {
        re.split(r"[~=<>!\[ ;]", d, maxsplit=1)[0].lower() for d in pyproject["project"]["dependencies"]
    }
    for extra in pyproject["project"].get("optional-dependencies", {}).values():
        declared |= {re.split(r"[~=<>!\[ ;]", d, maxsplit=1)[0].lower() for d in extra}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for path in (ROOT / "flowerlib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("flowerlib", "__future__"):
                    continue
                dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not dists & declared:
                    missing.setdefault(top, set()).add(path.name)
    assert not missing, f"imported by flowerlib but not declared in pyproject.toml: {missing}"


def test_the_dev_and_notebooks_extras_pin_what_requirements_pins():
    import tomllib

    req = {
        name: pin
        for (name, _), pin in _requirement_lines((ROOT / "requirements.txt").read_text().splitlines()).items()
    }
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("dev", "notebooks"):
        for line in extras[extra]:
            name, pin = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", line).groups()
            assert req.get(name.lower()) == pin, (
                f"{extra} extra: {line!r} vs requirements.txt {req.get(name.lower())!r}"
            )
