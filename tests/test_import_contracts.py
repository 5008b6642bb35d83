"""The import contracts in pyproject.toml cover every module they are meant to.

The README promises that only `textcore.web` imports FastAPI in the core and that, in a service, only its
app, dependencies and routes do. import-linter's forbidden contracts check only the modules they list, so a
module added later and not listed would go unchecked; this test fails until it is listed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "textcore": ROOT / "shared" / "textcore",
    "customer_service": ROOT / "packages" / "customer_service" / "customer_service",
    "finance_sentiment": ROOT / "packages" / "finance_sentiment" / "finance_sentiment",
    "recommender": ROOT / "packages" / "recommender" / "recommender",
}
# The modules allowed to import FastAPI, per package (everything else must be in a forbidden contract).
WEB_MODULES = {
    "textcore": {"web"},
    "customer_service": {"app", "deps", "routes"},
    "finance_sentiment": {"app", "deps", "routes"},
    "recommender": {"app", "deps", "routes"},
}


def _contracts() -> list[dict[str, Any]]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        contracts: list[dict[str, Any]] = tomllib.load(file)["tool"]["importlinter"]["contracts"]
    return contracts


def _top_level_modules(folder: Path) -> set[str]:
    """The package's direct modules and subpackages (Alembic's `migrations` folder is no package)."""
    modules = {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
    return modules | {path.parent.name for path in folder.glob("*/__init__.py")}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_but_the_web_layer_is_forbidden_to_import_fastapi(package: str) -> None:
    listed = {
        module.split(".")[1]
        for contract in _contracts()
        if contract["type"] == "forbidden" and "fastapi" in contract["forbidden_modules"]
        for module in contract["source_modules"]
        if module.split(".")[0] == package
    }
    unchecked = _top_level_modules(PACKAGES[package]) - WEB_MODULES[package] - listed
    assert not unchecked, (
        f"expected every {package} module but {sorted(WEB_MODULES[package])} in the FastAPI contract of "
        f"pyproject.toml; found unlisted: {sorted(unchecked)}"
    )
