"""Skipping a test whose real component is missing, unless it is required."""

from __future__ import annotations

import os
from typing import NoReturn

REQUIRE_E2E = "MNIST_RUNNER_REQUIRE_E2E"
REQUIRE_OPTIONAL = "MNIST_RUNNER_REQUIRE_OPTIONAL"
OPTIONAL_COMPONENTS = ("torch",)  # what a test may need that neither `make install` nor CI installs


def skip_or_fail(reason: str, optional: str | None = None) -> NoReturn:
    """Skip the calling test for ``reason``; fail it instead where what is
    missing is required, so a broken set-up cannot pass as skipped: what
    ``make install-e2e`` installs where MNIST_RUNNER_REQUIRE_E2E=1 (CI), an
    ``optional`` component (``torch``: ``make install-torch``) where
    MNIST_RUNNER_REQUIRE_OPTIONAL names it (``torch``; several names with
    commas or spaces between them). CI sets only MNIST_RUNNER_REQUIRE_E2E=1
    and installs no PyTorch: its PyTorch cases skip."""
    import pytest

    if optional is None:
        if os.environ.get(REQUIRE_E2E) == "1":
            pytest.fail(f"{reason} ({REQUIRE_E2E}=1)")
    else:
        setting = os.environ.get(REQUIRE_OPTIONAL, "")
        named = set(setting.replace(",", " ").split())
        if named - set(OPTIONAL_COMPONENTS):  # a misspelt name would require nothing
            pytest.fail(f"{REQUIRE_OPTIONAL}={setting}: the optional components are {', '.join(OPTIONAL_COMPONENTS)}")
        if optional in named:
            pytest.fail(f"{reason} ({REQUIRE_OPTIONAL}={setting})")
    pytest.skip(reason)
