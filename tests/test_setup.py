"""The locked set-up: requirements/lock*.txt pin what CI tested and agree with pyproject.toml.

pyproject.toml keeps open ranges for people who install linreg into their own environment; the
set-up installs the lock. A range changed without `make lock` (or a lock edited by hand) fails
here, in the default suite, before it can reach a fresh machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

REQUIREMENTS = ROOT / "requirements"
SETUP_EXTRAS = ("dev", "sweep", "cluster")


def pins(path: Path) -> dict[str, Version]:
    """A pip-compile lock's `name==version` lines."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip())
        if match:
            found[canonicalize_name(match.group(1))] = Version(match.group(2))
    return found


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    return [Requirement(text) for text in project["dependencies"]] + [
        Requirement(text) for extra in extras for text in optional[extra]
    ]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("lock.txt", SETUP_EXTRAS), ("lock-bench.txt", (*SETUP_EXTRAS, "bench"))],
)
def test_the_lock_pins_every_declared_requirement_within_its_range(
    lock: str, extras: tuple[str, ...]
) -> None:
    pinned = pins(REQUIREMENTS / lock)
    assert len(pinned) > 50, f"{lock} looks truncated: {len(pinned)} pins"
    for requirement in declared(extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not in {lock}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]} outside pyproject.toml's {requirement}: "
            "run `make lock`"
        )


def test_the_bench_lock_adds_to_the_setup_lock_without_changing_a_pin() -> None:
    setup, bench = pins(REQUIREMENTS / "lock.txt"), pins(REQUIREMENTS / "lock-bench.txt")
    changed = {name: (setup[name], bench[name]) for name in setup if bench.get(name) != setup[name]}
    assert not changed
    assert {"scikit-learn", "statsmodels"} <= set(bench) - set(setup)
    assert {"formulaic", "pandas", "scipy"} <= set(setup)  # text columns train after `make setup`


def test_the_lock_pins_the_torch_release_the_setup_installs_first() -> None:
    (torch_pin,) = [
        Requirement(line) for line in (REQUIREMENTS / "torch.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    (release,) = [Version(spec.version) for spec in torch_pin.specifier]
    # No build label (+cpu): any build of the release satisfies the lock.
    assert pins(REQUIREMENTS / "lock.txt")["torch"] == release
    assert "+" not in (REQUIREMENTS / "lock.txt").read_text().split("\ntorch==")[1].split()[0]


def test_the_setup_installs_the_lock_and_ci_runs_the_readmes_test_command() -> None:
    makefile = (ROOT / "Makefile").read_text()
    setup_recipe = makefile.split("$(VENV)/.installed:")[1].split("\nsetup:")[0]
    assert "-r $(LOCK)" in setup_recipe and "--no-deps -e ." in setup_recipe
    assert "$(LOCK)" in setup_recipe.splitlines()[0]  # a new lock re-runs the set-up
    assert re.search(r"^make test\b", (ROOT / "README.md").read_text(), re.M)
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text()
