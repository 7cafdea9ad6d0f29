"""Keras backends: choosing one (``backend=``, ``mnist_runner.config.backend``)
and every feature of a run on TensorFlow and JAX, and on PyTorch where it is
installed (``make install-torch``): where it is not, each PyTorch case
(marked ``torch``) is reported skipped, saying so.

Keras picks its backend once per process, so the runs on each backend are
real ``python run.py`` processes; the fast tests above them check the
choosing, the refusals and the backend-specific pieces without training.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap

import pytest
from helpers import REQUIRE_OPTIONAL, skip_or_fail
from helpers.store_copies import keep_tracking_uri
from PIL import Image

from mnist_runner.config import backend
from mnist_runner.errors import UserError
from mnist_runner.tracking import provenance

CORE = ["tensorflow", "jax"]  # what `make install` installs: every feature is tested on both
# PyTorch is optional: its cases are collected everywhere and skip where it is
# missing (the fixture below), so that a run without it shows what it left out.
TORCH = pytest.param("torch", marks=pytest.mark.torch)
TORCH_MISSING = "PyTorch is not installed: `make install-torch`"
WITH_TORCH = [*CORE, TORCH]
# Features whose TensorFlow run is already a test of its own (named where they
# are used) run here on the other backends only, to keep the suite's time.
NOT_TF = [name for name in CORE if name != "tensorflow"]
NOT_TF_WITH_TORCH = [*NOT_TF, TORCH]
# Every process here runs on the backend its command names (or its run's, when
# resumed), never on a KERAS_BACKEND left in the shell that starts the tests.
NO_BACKEND = {"KERAS_BACKEND": None}
# Numbers that differ from run to run by nature: wall times and the machine's load.
UNSTABLE = ("fit_seconds", "system/")


@pytest.fixture(autouse=True)
def torch_installed(request):
    """A case marked ``torch`` needs PyTorch: skipped without it, or failed
    where MNIST_RUNNER_REQUIRE_OPTIONAL names torch."""
    if request.node.get_closest_marker("torch") and not backend.installed("torch"):
        skip_or_fail(TORCH_MISSING, optional="torch")


@pytest.mark.parametrize(
    "required, outcome, says",
    [
        ({}, pytest.skip.Exception, TORCH_MISSING),
        # What CI sets: the components of `make install-e2e` are required, PyTorch is not.
        ({"MNIST_RUNNER_REQUIRE_E2E": "1"}, pytest.skip.Exception, TORCH_MISSING),
        ({REQUIRE_OPTIONAL: "torch"}, pytest.fail.Exception, f"{TORCH_MISSING} ({REQUIRE_OPTIONAL}=torch)"),
        ({REQUIRE_OPTIONAL: " torch, "}, pytest.fail.Exception, TORCH_MISSING),
        ({REQUIRE_OPTIONAL: "troch"}, pytest.fail.Exception, f"{REQUIRE_OPTIONAL}=troch: the optional components are"),
    ],
)
def test_a_missing_pytorch_skips_unless_it_is_required(monkeypatch, required, outcome, says):
    for name in ("MNIST_RUNNER_REQUIRE_E2E", REQUIRE_OPTIONAL):
        monkeypatch.delenv(name, raising=False)
    for name, value in required.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(outcome) as ended:
        skip_or_fail(TORCH_MISSING, optional="torch")
    assert says in str(ended.value)


# -- choosing a backend, without training ------------------------------------------


def test_the_default_is_tensorflow_and_auto_is_offered(compose_cfg):
    assert compose_cfg().backend == "tensorflow" == backend.DEFAULT
    assert set(backend.CHOICES) == {"tensorflow", "jax", "torch", "auto"}


@pytest.mark.parametrize("value", ["theano", "TensorFlow", "", None])
def test_an_unknown_backend_is_refused_naming_the_choices(value):
    with pytest.raises(UserError, match="choose one of tensorflow, jax, torch, auto"):
        backend.check(value)


def test_a_backend_that_is_not_installed_is_refused_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(backend, "installed", lambda name: name != "torch")
    with pytest.raises(UserError, match="backend=torch: torch is not installed here; install it with make install-t"):
        backend.check("torch")
    backend.check("auto")  # auto picks among what is installed


def test_a_preset_can_set_the_backend(compose_cfg, tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "dense_on_jax.yaml").write_text("# @package _global_\nbackend: jax\n")
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    assert compose_cfg(searchpath, "experiment=dense_on_jax").backend == "jax"
    assert compose_cfg(searchpath, "experiment=dense_on_jax", "backend=torch").backend == "torch"


def test_validate_checks_the_backend_before_anything_loads(compose_cfg):
    from mnist_runner.config import schema

    cfg = compose_cfg("backend=jax")
    schema.validate(cfg)
    cfg.backend = "mxnet"
    with pytest.raises(UserError, match="backend='mxnet' is not allowed"):
        schema.validate(cfg)


@pytest.mark.parametrize(
    "gpu, model_type, expected",
    [(False, "dense", "jax"), (False, "cnn", "tensorflow"), (True, "dense", "jax"), (True, "cnn", "jax")],
)
def test_auto_picks_the_measured_fastest_backend_per_model_and_hardware(monkeypatch, gpu, model_type, expected):
    monkeypatch.setattr(backend, "has_nvidia_gpu", lambda: gpu)
    assert backend.resolve("auto", model_type) == expected
    assert backend.resolve("torch", model_type) == "torch"
    assert backend.resolve(None, model_type) == "tensorflow"  # a run logged before the key: TensorFlow


def test_auto_falls_back_to_an_installed_backend(monkeypatch):
    monkeypatch.setattr(backend, "has_nvidia_gpu", lambda: False)
    monkeypatch.setattr(backend, "installed", lambda name: name == "tensorflow")
    assert backend.resolve("auto", "dense") == "tensorflow"
    monkeypatch.setattr(backend, "installed", lambda name: False)
    with pytest.raises(UserError, match="none of tensorflow, jax, torch is installed"):
        backend.resolve("auto", "dense")


def test_presets_and_the_model_decide_auto(compose_cfg, monkeypatch):
    monkeypatch.setattr(backend, "has_nvidia_gpu", lambda: False)
    assert backend.of_config(compose_cfg("backend=auto")) == "jax"
    assert backend.of_config(compose_cfg("backend=auto", "experiment=fast_convnet")) == "tensorflow"
    assert backend.of_config(compose_cfg("backend=torch", "model=cnn")) == "torch"


def test_another_backend_than_the_loaded_one_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(backend, "loaded", lambda: "tensorflow")
    backend.activate("tensorflow")
    with pytest.raises(backend.BackendMismatch) as refused:
        backend.activate("jax")
    message = str(refused.value)
    assert "Keras in this process already runs on tensorflow" in message
    assert "python run.py backend=jax" in message and "KERAS_BACKEND=jax" in message


def test_the_python_api_refuses_a_backend_other_than_the_one_keras_runs(monkeypatch):
    import keras

    from mnist_runner import train

    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    with pytest.raises(backend.BackendMismatch, match=f"backend={other}: Keras in this process already runs on"):
        train([f"backend={other}"])


def test_the_pipeline_refuses_a_config_for_another_backend_before_any_run():
    import keras

    from mnist_runner.pipeline.session import prepare_session

    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    with pytest.raises(backend.BackendMismatch):
        prepare_session(1, False, "float32", other)


def test_activate_sets_the_backend_and_jax_cache_before_keras_loads(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "loaded", lambda: None)
    monkeypatch.setattr(backend, "JAX_CACHE_DIR", tmp_path / "cache")
    for name in ("KERAS_BACKEND", "JAX_COMPILATION_CACHE_DIR", "XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    backend.activate("jax", deterministic=True)
    assert os.environ["KERAS_BACKEND"] == "jax"
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "cache")
    assert "--xla_gpu_deterministic_ops=true" in os.environ["XLA_FLAGS"]
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
    backend.activate("jax")
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == "/elsewhere", "the user's own cache wins"


def importing(finder, module: str, importer: str):
    """``finder.find_spec(module)`` as seen from code in module ``importer``."""
    namespace = {"__name__": importer, "finder": finder, "module": module}
    exec("result = finder.find_spec(module)", namespace)
    return namespace["result"]


def test_other_frameworks_are_kept_out_only_where_a_run_never_uses_them():
    on_tensorflow = backend.SkipUnusedImports("tensorflow")
    with pytest.raises(ModuleNotFoundError):
        importing(on_tensorflow, "jax", "keras.src.callbacks.orbax_checkpoint")
    with pytest.raises(ModuleNotFoundError):
        importing(on_tensorflow, "jax", "tensorflow.lite.python.util")
    assert importing(on_tensorflow, "jax", "__main__") is None, "the user's own import of JAX works"
    assert importing(on_tensorflow, "tensorflow", "keras.src.utils.module_utils") is None

    on_jax = backend.SkipUnusedImports("jax")
    assert importing(on_jax, "jax", "keras.src.callbacks.orbax_checkpoint") is None
    with pytest.raises(ModuleNotFoundError):
        importing(on_jax, "tensorflow", "keras.src.utils.module_utils")
    assert importing(on_jax, "tensorflow", "__main__") is None


def test_a_sweep_over_backends_needs_a_process_per_job():
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    submitit = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    backend.check_sweep(["jax", "jax"], basic)
    backend.check_sweep(["tensorflow", "jax"], submitit)
    for launcher in (basic, joblib):
        with pytest.raises(UserError, match="this sweep trains on jax and tensorflow") as refused:
            backend.check_sweep(["tensorflow", "jax"], launcher)
        assert "hydra/launcher=submitit_local" in str(refused.value)


@pytest.mark.parametrize("name", WITH_TORCH)
def test_the_logged_model_requires_the_backend_it_was_trained_on(monkeypatch, name):
    monkeypatch.setattr(provenance, "keras_backend", lambda: name)
    requirements = provenance.model_requirements()
    assert requirements[0].startswith("keras==")
    if name == "tensorflow":
        assert requirements[1].startswith("tensorflow==")
    else:
        assert any(r.startswith(f"{name}==") for r in requirements)


def test_run_tags_name_the_backend_the_device_and_the_versions():
    import keras

    tags = provenance.environment_tags()
    assert tags["backend"] == keras.backend.backend()
    assert tags["device"].startswith(("CPU: ", "GPU: "))
    assert tags["version.keras"] == keras.__version__


def test_pytorch_runs_one_batch_per_call_instead_of_failing(monkeypatch):
    import keras

    from mnist_runner.pipeline import training

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    assert training.effective_steps_per_execution(32) == 1
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert training.effective_steps_per_execution(32) == 32


def test_the_logging_warm_up_starts_once_and_never_fails(monkeypatch):
    from mnist_runner.tracking import warmup

    started = []

    class FakeThread:
        def __init__(self, target, name, daemon):
            self.name, self.daemon = name, daemon

        def start(self):
            started.append((self.name, self.daemon))

    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup.threading, "Thread", FakeThread)
    warmup.start()
    warmup.start()
    assert started == [("logging-warm-up", True)]
    warmup.warm_up()  # its work, here in this thread: nothing raised


# -- every feature on every backend: real runs ----------------------------------------


def stable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(UNSTABLE)}


def digit_png(folder, index=0):
    from mnist_runner.datasets.loader import load_dataset

    mnist = load_dataset("mnist")
    path = folder / f"digit-{index}.png"
    Image.fromarray(mnist.x_test[index]).save(path)
    return path, int(mnist.y_test[index])


@pytest.mark.e2e
@pytest.mark.parametrize("name", NOT_TF_WITH_TORCH)
def test_a_run_records_everything_and_its_model_loads_on_the_default_backend(tmp_store, name, capsys, monkeypatch):
    """bfloat16 training, the gap, checkpoints, tags, the logged model with
    its requirements; then the registry and predict.py's ``main`` load that
    model in this test's process, where Keras runs on TensorFlow (the
    commands' own exit codes and output are tested in test_predict.py). On
    TensorFlow: test_run_e2e.py, test_predict.py, test_precision.py and the
    requirements test above."""
    done = tmp_store.run_py(
        f"backend={name}",
        "trainer.precision=mixed_bfloat16",
        "data.train_samples=3000",
        "trainer.epochs=3",
        "trainer.train_eval_samples=500",
        env=NO_BACKEND,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    client, run = tmp_store.client(), tmp_store.only_run("mnist")
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["backend"] == name and run.data.params["trainer.precision"] == "mixed_bfloat16"
    assert run.data.tags["backend"] == name
    assert run.data.tags["device"].startswith(("CPU: ", "GPU: "))
    backend_package = {"tensorflow": "version.tensorflow", "jax": "version.jax", "torch": "version.torch"}[name]
    assert any(tag.startswith(backend_package) for tag in run.data.tags), run.data.tags
    assert [m.step for m in client.get_metric_history(run_id, "overfit_gap")] == [1, 2, 3]
    assert run.data.metrics["test_accuracy"] > 0.8
    assert not (tmp_store.checkpoints / run_id).exists(), "a finished run removes its checkpoints"

    import mlflow

    from mnist_runner.serving import logged_models

    keep_tracking_uri(monkeypatch)
    mlflow.set_tracking_uri(tmp_store.uri)
    _, model = logged_models.run_with_model(client, run_id)
    requirements_file = mlflow.pyfunc.get_model_dependencies(model.model_uri)
    requirements = open(requirements_file).read().split()
    assert any(line.startswith("keras==") for line in requirements)
    assert any(line.startswith(f"{name}==") for line in requirements), requirements

    import keras

    from mnist_runner.serving import predict, registry

    assert keras.backend.backend() == "tensorflow", "the model must load where Keras runs another backend"
    image, digit = digit_png(tmp_store.root)
    capsys.readouterr()
    assert registry.main(["--uri", tmp_store.uri, "--run", run_id, "--name", "m"]) == 0
    for which in (["--run", run_id], ["--model-uri", "models:/m@champion"]):
        capsys.readouterr()
        assert predict.main([str(image), *which, "--uri", tmp_store.uri]) == 0
        printed = capsys.readouterr().out
        assert printed.splitlines()[1].split()[1] == str(digit), printed


@pytest.mark.e2e
@pytest.mark.parametrize("name", NOT_TF)
def test_the_same_seed_twice_in_one_process_gives_identical_numbers(tmp_store, name):
    """Determinism on the CPU, and the session reset between two runs of one
    process (the Python API). On TensorFlow: test_training_semantics.py's
    determinism test and test_faults.py's same seed twice."""
    overrides = [
        f"backend={name}",
        "data.train_samples=2000",
        "trainer.epochs=2",
        "model.dropout=0.2",
        "tracking.log_model=false",
        *tmp_store.overrides(),
    ]
    script = textwrap.dedent(
        f"""
        import json
        from mnist_runner import train
        results = [train({overrides!r}) for _ in range(2)]
        print("RESULT", json.dumps([{{"metrics": r.metrics, "history": r.history.to_dict("list")}} for r in results]))
        """
    )
    done = tmp_store.run_process([sys.executable, "-c", script], env=NO_BACKEND, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    first, second = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert stable(first["metrics"]) == stable(second["metrics"])
    assert first["history"] == second["history"]
    assert [r.data.tags["backend"] for r in tmp_store.runs("mnist")] == [name, name]


@pytest.mark.e2e
@pytest.mark.parametrize("name", NOT_TF_WITH_TORCH)
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweeps_in_process_and_in_worker_processes(tmp_store, name, launcher):
    """On TensorFlow: test_sweep.py (in-process and joblib sweeps)."""
    done = tmp_store.run_py(
        f"hydra/launcher={launcher}",
        f"backend={name}",
        "data=digits",
        "trainer.epochs=2",
        "trainer.seed=1,2",
        "tracking.log_model=false",
        multirun=True,
        env=NO_BACKEND,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    children = tmp_store.runs("digits", role="child")
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert {r.data.tags["backend"] for r in children} == {name}
    assert (tmp_store.root / "sweep" / "report" / "gap_report.csv").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("name", NOT_TF)
def test_search_prunes_a_hopeless_trial(tmp_store, name):
    """On TensorFlow: test_search.py's hopeless trial."""
    import optuna

    storage = f"sqlite:///{tmp_store.root / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    for learning_rate in (0.01, 0.01, 0.000001):  # the third cannot learn in 3 epochs
        study.enqueue_trial({"trainer.learning_rate": learning_rate, "trainer.optimizer": "adam"})
    done = tmp_store.run_py(
        f"backend={name}",
        "hydra/sweeper=optuna_search",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=tiny",
        "hydra.sweeper.pruning_warmup_epochs=1",
        "trainer.learning_rate=tag(log, interval(0.000001, 0.05))",
        "trainer.optimizer=choice(adam, rmsprop)",
        "data=digits",
        "trainer.epochs=3",
        "tracking.log_model=false",
        multirun=True,
        env=NO_BACKEND,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    states = [t.state.name for t in optuna.load_study(study_name="tiny", storage=storage).trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    children = tmp_store.runs("digits", role="child")
    assert {r.data.tags["backend"] for r in children} == {name}


@pytest.mark.e2e
@pytest.mark.parametrize("name", NOT_TF)
def test_a_stop_signal_ends_the_run_killed_and_resume_finishes_it_on_its_backend(tmp_store, name):
    """On TensorFlow: test_faults.py's interrupted and resumed runs."""
    process = tmp_store.start_py(
        f"backend={name}", "data=digits", "trainer.epochs=12", "tracking.log_model=false", env=NO_BACKEND
    )
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("Epoch 3/"):
            process.send_signal(signal.SIGTERM)
            break
    rest, _ = process.communicate(timeout=300)
    assert process.returncode == 143, ("".join(output) + rest)[-3000:]
    run = tmp_store.only_run("digits")
    assert run.info.status == "KILLED" and run.data.tags["backend"] == name
    run_id = run.info.run_id

    # Resumed from a process whose command line names no backend: the run's own is used.
    # On JAX with the training set kept on the device (pipeline.device_data: the
    # GPU path, forced on the CPU), batches gathered there.
    device = {"MNIST_RUNNER_DEVICE_DATA": "1"} if name == "jax" else {}
    done = tmp_store.run_py(f"resume={run_id}", env={**NO_BACKEND, **device})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert ("training data on the device" in done.stdout + done.stderr) == bool(device)
    client, run = tmp_store.client(), tmp_store.only_run("digits")
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == name
    assert int(run.data.tags["resumed_from_epoch"]) >= 2
    assert sorted({m.step for m in client.get_metric_history(run_id, "overfit_gap")}) == list(range(1, 13))
    assert run.data.metrics["test_accuracy"] > 0.5


@pytest.mark.e2e
@pytest.mark.parametrize("name", NOT_TF)
def test_a_diverging_run_fails_with_its_reason(tmp_store, name):
    """On TensorFlow: test_faults.py's diverging loss."""
    done = tmp_store.run_py(
        f"backend={name}",
        "data=digits",
        "trainer.optimizer=sgd",
        # At 1e6 TensorFlow's loss becomes NaN, while JAX's stays finite at the
        # clipped cross-entropy's maximum (its softmax is computed stably) and
        # the run ends at chance accuracy; a rate this large overflows on both.
        "trainer.learning_rate=1e12",
        "tracking.log_model=false",
        env=NO_BACKEND,
    )
    assert done.returncode == 1, (done.stdout + done.stderr)[-3000:]
    assert "training diverged: the loss became nan in epoch 1" in done.stdout + done.stderr
    assert [r.info.status for r in tmp_store.runs("digits")] == ["FAILED"]


@pytest.mark.e2e
def test_a_sweep_over_backends_fails_at_once_in_one_process_and_runs_with_a_process_per_job(tmp_store):
    jobs = ("backend=tensorflow,jax", "data=digits", "trainer.epochs=1", "tracking.log_model=false")
    refused = tmp_store.run_py(*jobs, multirun=True, sweep_dir="refused", timeout=120, env=NO_BACKEND)
    assert refused.returncode == 2, (refused.stdout + refused.stderr)[-3000:]
    assert "this sweep trains on jax and tensorflow" in refused.stdout + refused.stderr
    assert tmp_store.runs("digits") == [], "refused before any run"

    done = tmp_store.run_py("hydra/launcher=submitit_local", *jobs, multirun=True, env=NO_BACKEND)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    children = tmp_store.runs("digits", role="child")
    assert sorted(r.data.tags["backend"] for r in children) == ["jax", "tensorflow"]
    assert all(r.info.status == "FINISHED" for r in children)
