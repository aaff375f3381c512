"""Fixtures for the deploy/ tests: promtool, prometheus, the rule file and the dashboard."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from deployfiles import load_dashboard, load_rules


@pytest.fixture(scope="session")
def promtool() -> str:
    """The promtool binary; the deploy tests fail (not skip) without it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package "
                    "(`make deps` installs it, as root)")
    return path


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus not found: install Debian's prometheus package (`make deps` installs it, as root)")
    return path


@pytest.fixture(scope="session")
def rules_doc() -> dict[str, Any]:
    return load_rules()


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    return load_dashboard()
