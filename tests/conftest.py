"""Shared fixtures: every test gets its own empty cache, and no test sees the developer's environment."""

from __future__ import annotations

import pytest

_ZOO_ENV = ("ZOO_HOME", "ZOO_REGISTRY", "ZOO_MIRROR", "ZOO_OFFLINE", "ZOO_DEBUG")


@pytest.fixture(autouse=True)
def zoo_home(tmp_path_factory, monkeypatch):
    """Point ZOO_HOME at a fresh temporary directory and clear the other ZOO_* variables."""
    for name in _ZOO_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("zoo_home")
    monkeypatch.setenv("ZOO_HOME", str(home))
    return home
