import subprocess
import sys

import pytest
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnist_runner.config import params, schema
from mnist_runner.paths import CONFIG_DIR, DEFAULT_TRACKING_URI, EXPERIMENTS_DIR, PROJECT_ROOT

GROUPS = ["data", "preprocess", "model", "trainer", "tracking"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONFIG_DIR / group).glob("*.yaml"))]
EXPERIMENTS = sorted(path.stem for path in EXPERIMENTS_DIR.glob("*.yaml"))


def test_every_group_has_options():
    assert {group for group, _ in OPTIONS} == set(GROUPS)
    assert {"course_dense", "course_cnn", "keras_convnet"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_group_option_composes(compose_cfg, group, option):
    cfg = compose_cfg(f"{group}={option}")
    assert set(cfg) == {*GROUPS, "resume", "verbose", "backend"}
    if "name" in cfg[group]:
        assert cfg[group].name == option


def test_defaults_are_the_course(compose_cfg):
    cfg = compose_cfg()
    assert (cfg.data.name, cfg.preprocess.name, cfg.model.name) == ("mnist", "scale", "dense")
    assert cfg.data.train_samples is None and cfg.data.path is None
    t = cfg.trainer
    assert (t.epochs, t.batch_size, t.validation_split, t.optimizer) == (10, 128, 0.3, "rmsprop")
    assert t.early_stopping is False
    assert cfg.tracking.uri == DEFAULT_TRACKING_URI == f"sqlite:///{PROJECT_ROOT}/runs/mlflow.db"
    assert cfg.tracking.experiment == "mnist"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(compose_cfg, name):
    cfg = compose_cfg(f"experiment={name}")
    schema.validate(cfg)
    preset = OmegaConf.load(EXPERIMENTS_DIR / f"{name}.yaml")
    is_sweep = OmegaConf.select(preset, "hydra.mode") == "MULTIRUN"
    # Single-run presets name their runs after themselves.
    assert is_sweep or cfg.tracking.run_name == name


def test_sweep_preset_sweeps_the_four_factors_over_three_seeds():
    preset = OmegaConf.load(EXPERIMENTS_DIR / "overfitting_gap.yaml")
    assert preset.hydra.mode == "MULTIRUN"
    params = preset.hydra.sweeper.params
    assert set(params) == {"model", "trainer.epochs", "model.dropout", "data.train_samples", "trainer.seed"}
    # Every configuration repeated: the report's intervals need at least 3 seeds.
    assert len(str(params["trainer.seed"]).split(",")) >= 3


def test_experiments_set_the_course_and_keras_io_recipes(compose_cfg):
    cnn = compose_cfg("experiment=course_cnn")
    assert (cnn.model.name, cnn.trainer.epochs) == ("cnn", 2)
    convnet = compose_cfg("experiment=keras_convnet")
    assert convnet.model.conv_filters == [32, 64] and convnet.model.dropout == 0.5
    t = convnet.trainer
    assert (t.optimizer, t.epochs, t.validation_split, t.batch_size) == ("adam", 15, 0.1, 128)


def test_command_line_wins_over_experiment(compose_cfg):
    assert compose_cfg("experiment=course_cnn", "trainer.epochs=5").trainer.epochs == 5


@pytest.mark.parametrize(
    "overrides",
    [
        ["++tracking.tags={team: vision, ticket: ML-42}"],
        ["+tracking.tags.team=vision", "+tracking.tags.ticket=ML-42"],
    ],
)
def test_user_tags_are_set_with_plus_plus_or_one_plus_per_key(compose_cfg, overrides):
    cfg = compose_cfg(*overrides, 'tracking.description="first try"')
    assert dict(cfg.tracking.tags) == {"team": "vision", "ticket": "ML-42"}
    assert cfg.tracking.description == "first try"
    schema.validate(cfg)


@pytest.mark.parametrize("override", ["tracking.tags={team: vision}", "tracking.tags.team=vision"])
def test_plain_tags_override_is_refused_by_struct_mode(compose_cfg, override):
    # run.py then adds the hint (tests/cli/test_interrupt_and_quiet.py checks it).
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_cfg(override)


def test_unknown_experiment_fails_and_lists_the_known_ones(compose_cfg):
    with pytest.raises(MissingConfigException) as error:
        compose_cfg("experiment=does_not_exist")
    assert "Could not find 'experiment/does_not_exist'" in str(error.value)
    for name in EXPERIMENTS:
        assert f"\t{name}\n" in str(error.value) + "\n"


@pytest.mark.slow
def test_unknown_experiment_on_the_command_line(tmp_store):
    # --cfg first: Hydra's argparse refuses overrides on both sides of it, and the store's come last.
    done = tmp_store.run_py("--cfg", "job", "experiment=nope", timeout=60)
    assert done.returncode != 0
    assert "Could not find 'experiment/nope'" in done.stderr
    assert "course_dense" in done.stderr


def test_flatten_gives_dotted_keys(compose_cfg):
    flat = params.flatten(compose_cfg("model=cnn"))
    assert flat["trainer.epochs"] == 10
    assert flat["model.conv_filters"] == [32]
    assert flat["data.path"] is None
    assert not any(isinstance(value, dict) for value in flat.values())


@pytest.mark.slow
@pytest.mark.parametrize("flag", [["--help"], ["--cfg", "job"]])
def test_help_and_cfg_do_not_import_tensorflow(flag):
    # run.py as __main__ in one interpreter, then look at what got imported.
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['run.py', *{flag!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(PROJECT_ROOT / 'run.py')!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TF_IMPORTED' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'TF_NOT_IMPORTED')\n"
    )
    # Not TempStore's: run.py runs through runpy, so that the same interpreter then reports its imports.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "TF_NOT_IMPORTED" in done.stdout, done.stdout + done.stderr
    assert ("trainer" in done.stdout) if "--cfg" in flag else ("experiment:" in done.stdout)


@pytest.mark.slow
def test_help_lists_the_same_groups_as_hydra_does_alone():
    """``--help`` asks Hydra about every group through one copy of its config
    repository (compose.list_groups_once); the page must be Hydra's own."""

    def help_page(patched: bool) -> str:
        script = (
            "import runpy, sys\n"
            "from mnist_runner.config import compose\n"
            + ("" if patched else "compose.list_groups_once = lambda: None\n")
            + "sys.argv = ['run.py', '--help']\n"
            f"runpy.run_path({str(PROJECT_ROOT / 'run.py')!r}, run_name='__main__')\n"
        )
        # Not TempStore's: run.py runs through runpy, after the snippet has (or has not) patched compose.
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    fast, hydra_alone = help_page(patched=True), help_page(patched=False)
    assert "\nmodel: " in fast and "\nexperiment: " in fast
    assert fast == hydra_alone


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "hparams_search").glob("*.yaml")))
def test_every_search_preset_composes(compose_cfg, name):
    schema.validate(compose_cfg(f"hparams_search={name}"))
    preset = OmegaConf.load(CONFIG_DIR / "hparams_search" / f"{name}.yaml")
    assert {"override /hydra/sweeper": "optuna_search"} in preset.defaults
    assert preset.hydra.sweeper.params
