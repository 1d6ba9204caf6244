"""Fixtures shared by the hostile suite (tests/hostile/): the toy class attackers join."""

from __future__ import annotations

import pytest

from hostile.hostile_class import ToyClass


@pytest.fixture(scope="module")
def toy_class(tmp_path_factory) -> ToyClass:
    """A fresh toy class per test module: released lessons, alice (full marks), bob (blank)."""
    return ToyClass(tmp_path_factory.mktemp("hostile-class"))
