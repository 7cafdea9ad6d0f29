"""``make help`` lists every target the Makefile defines: each has its
``## `` description, read from the Makefile and in ``make help``'s output."""

import re
import subprocess

import pytest

from mnist_runner.paths import PROJECT_ROOT


def makefile_targets() -> tuple[set[str], set[str]]:
    """Every target the Makefile defines, and those ``make help`` lists (its
    recipe's pattern, read from the Makefile itself)."""
    text = (PROJECT_ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([a-z0-9][a-z0-9_-]*):(?!=)", text, flags=re.MULTILINE))
    pattern = re.search(r"@grep -E '([^']+)' \$\(MAKEFILE_LIST\)", text).group(1)
    listed = {line.split(":", 1)[0] for line in text.splitlines() if re.search(pattern, line)}
    return defined, listed


def test_make_help_lists_every_target():
    defined, listed = makefile_targets()
    assert {"runs", "delete-runs", "register", "predict", "ui"} <= defined
    assert defined == listed, f"without a '## ' description: {sorted(defined - listed)}"


@pytest.mark.slow  # starts make
def test_make_help_output_names_every_target():
    done = subprocess.run(["make", "-s", "help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = {line.split()[1] for line in done.stdout.splitlines() if line.strip().startswith("make ")}
    assert shown == makefile_targets()[0]
