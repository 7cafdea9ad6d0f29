"""``make test`` runs the suite on pytest-xdist's workers with ``--dist
loadgroup``: the tests that share a module's trained run or server are put
in one group (tests/conftest.py) so that one worker builds it once. Grouping
fails silently where pytest and pytest-xdist disagree (pytest-xdist 3.8 on
pytest 9.2: its issue 1386), and the suite then builds those fixtures on
every worker; this runs a tiny suite the same way and looks."""

import os
import subprocess
import sys

import pytest

# Two groups of tests and some loose ones: a worker records each test's name.
TINY_SUITE = """
import os
import pytest


def record(name):
    with open(os.path.join(os.environ["OUT"], name), "w") as out:
        out.write(os.environ.get("PYTEST_XDIST_WORKER", "none"))


@pytest.mark.xdist_group("first")
@pytest.mark.parametrize("n", range(4))
def test_first(n):
    record(f"first-{n}")


@pytest.mark.xdist_group("second")
@pytest.mark.parametrize("n", range(4))
def test_second(n):
    record(f"second-{n}")


@pytest.mark.parametrize("n", range(8))
def test_loose(n):
    record(f"loose-{n}")
"""


@pytest.mark.slow  # starts pytest with two workers
def test_loadgroup_runs_each_group_on_one_worker(tmp_path):
    suite, out = tmp_path / "suite", tmp_path / "out"
    suite.mkdir()
    out.mkdir()
    (suite / "test_tiny.py").write_text(TINY_SUITE)
    (suite / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=suite,
        env={**os.environ, "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workers = {path.name: path.read_text() for path in out.iterdir()}
    assert len(workers) == 16
    for group in ("first", "second"):
        used = {worker for name, worker in workers.items() if name.startswith(group)}
        assert len(used) == 1, f"group {group!r} ran on {sorted(used)}: pytest {pytest.__version__} does not group"
    assert set(workers.values()) == {"gw0", "gw1"}  # both workers did run tests
