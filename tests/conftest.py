import pytest
from helpers import TempStore
from helpers.fake_runs import FakeStore, make_fake_store
from helpers.store_copies import migrated_store
from hydra import compose, initialize_config_dir

from mnist_runner.config import compose as config
from mnist_runner.paths import CONFIG_DIR

config.register()

# Marks for tests that start real components or subprocesses: each implies `slow`.
IMPLY_SLOW = ("e2e", "browser", "server", "slurm")
# Fixtures that train a model or start a process: every test using one,
# directly or through another fixture, is `slow`.
SLOW_FIXTURES = {
    "run_cli",  # below: `python run.py` per call
    "trained",  # test_predict.py: a real MNIST run, shared by the module
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark, and before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in IMPLY_SLOW) or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if shares_a_module_fixture(item):
            # One worker runs the module's tests that share it: it is built once.
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    if config.getoption("dist", "no") != "no":
        # Under pytest-xdist the slow tests go out first, so that none of
        # them is left to run alone on one worker at the end.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def shares_a_module_fixture(item) -> bool:
    """Whether the test uses one of the suite's fixtures built once per
    module (a trained run, a server, a SLURM cluster); pytest's own
    (``tmp_path_factory``) have no ``baseid``. pytest has no public view of
    a test's fixtures' scopes before they are set up, so this reads the one
    its plugins read; without it every test is on its own."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(
        fixture.baseid and fixture.scope in ("module", "package", "session")
        for defs in definitions.values()
        for fixture in defs
    )


@pytest.fixture
def tmp_store(tmp_path) -> TempStore:
    """A temporary MLflow store, checkpoint and Hydra folder: ``tmp_path``.
    Its SQLite file is already created (a copy of a migrated one): MLflow's
    migrations cost a first run 1-2 s, and only the tests of store creation
    need to watch them (they use ``empty_store``)."""
    return migrated_store(tmp_path)


@pytest.fixture
def empty_store(tmp_path) -> TempStore:
    """``tmp_store`` without a store file yet: for a test that checks that a
    command creates the store, or that a refused one creates nothing."""
    return TempStore(tmp_path)


@pytest.fixture
def compose_cfg():
    """Compose the project's config as ``run.py`` would, with overrides."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture
def run_cli(tmp_store):
    """``tmp_store.run_py``: ``python run.py`` in a subprocess with ``tmp_store``
    (unless the overrides name another uri or folder); returns (completed
    process, tracking uri)."""

    def _run(*overrides: str, timeout: int = 600):
        given = dict(o.split("=", 1) for o in overrides if "=" in o)
        return tmp_store.run_py(*overrides, timeout=timeout), given.get("tracking.uri", tmp_store.uri)

    return _run


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory) -> FakeStore:
    """A store of hand-made runs (``helpers.fake_runs``), one per test module
    (some tests delete runs from it)."""
    return make_fake_store(tmp_path_factory.mktemp("fake_store"))
