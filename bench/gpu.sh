#!/usr/bin/env bash
# The backend benchmark on a machine with an NVIDIA GPU that has Python 3.12
# and JAX (or PyTorch) for CUDA but not the runner's other dependencies, and
# perhaps no network:
#
#   where pip works:  make gpu-wheels   # the runner's pure-Python dependencies as
#                                       # Python 3.12 wheels, into bench/gpu-wheels/
#   on the GPU:       make bench-gpu    # installs them into a folder of their own (what
#                                       # the machine has already is kept) and runs
#                                       # bench/backends.py --gpu: bench/results/gpu.json
#                                       # and the GPU part of BENCHMARKS.md
#
# Bring along bench/gpu-wheels/ (about 47 MB) and runs/data/mnist.npz (`make data`, 11 MB).
# Arguments after `run` go to bench/backends.py. Everything (the table of every
# backend there and plain Keras on JAX, the runner's fixed cost, JAX's compilation
# cache, the training set on the device or not) is about 25 processes of 15-40 s
# each; where time on the GPU is short, run it in two calls (results add up):
#   make bench-gpu ARGS="--parts table"
#   make bench-gpu ARGS="--parts overhead jax_cache device_data --reps 2"
# BENCH_COPY_TO=DIR copies bench/results/gpu.json, BENCHMARKS.md and the runs' logs
# there at the end (a folder that is brought back from the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=bench/gpu-wheels
PY=${PYTHON:-python3}

# What the runner needs besides the frameworks; resolved here, downloaded for 3.12.
NEEDS=("keras>=3.15,<3.16" "hydra-core==1.3.8" "omegaconf>=2.3,<2.4" "optuna>=4,<6" "tabulate>=0.9"
       "hydra-joblib-launcher==1.2.0")
# Large packages that such a machine has with its frameworks: not carried.
ASSUMED="numpy pandas scipy scikit-learn matplotlib pyarrow h5py pillow psutil ml-dtypes contourpy fonttools kiwisolver jax jaxlib torch"

case "${1:-run}" in
wheels)
    VENV_PY=${VENV_PY:-.venv/bin/python}
    mlflow_version=$($VENV_PY -c "from importlib.metadata import version; print(version('mlflow'))")
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    $VENV_PY -m pip install --quiet --dry-run --ignore-installed --report "$WHEELS/report.json" \
        "${NEEDS[@]}" "mlflow==$mlflow_version"
    mapfile -t specs < <($VENV_PY - "$WHEELS/report.json" "$ASSUMED" <<'EOF'
import json, re, sys
assumed = set(sys.argv[2].split())
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if re.sub(r"[-_.]+", "-", name).lower() not in assumed:
        print(f"{name}=={version}")
EOF
)
    sdists=(); binaries=()
    for spec in "${specs[@]}"; do
        case "$spec" in antlr4-python3-runtime==*) sdists+=("$spec") ;; *) binaries+=("$spec") ;; esac
    done
    $VENV_PY -m pip download --quiet --no-deps --only-binary=:all: --dest "$WHEELS" --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 "${binaries[@]}"
    # antlr4-python3-runtime 4.9.3 (Hydra's parser) exists only as an sdist: a pure-Python wheel built here.
    [ ${#sdists[@]} -eq 0 ] || $VENV_PY -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "${sdists[@]}"
    rm -f "$WHEELS/report.json"
    echo "$(ls "$WHEELS" | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS"
    ;;
run)
    shift || true
    [ -f runs/data/mnist.npz ] || { echo "runs/data/mnist.npz is missing: run make data where the data can be fetched"; exit 2; }
    DEPS=${GPU_DEPS_DIR:-${TMPDIR:-/tmp}/mnist-runner-gpu-deps}
    mkdir -p "$DEPS"
    # Only the wheels whose package the machine lacks: its own builds stay in use.
    $PY - "$WHEELS" "$DEPS" <<'EOF'
import pathlib, re, sys, zipfile
from importlib.metadata import PackageNotFoundError, version
wheels, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
added = []
for wheel in sorted(wheels.glob("*.whl")):
    name = wheel.name.split("-")[0]
    try:
        version(re.sub(r"[-_.]+", "-", name))
        continue
    except PackageNotFoundError:
        pass
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    for data in target.glob("*.data"):  # a wheel's purelib/platlib parts belong at the top
        for part in data.glob("*lib"):
            for item in part.iterdir():
                item.replace(target / item.name)
    added.append(name)
print(f"{len(added)} packages added in {target}: {' '.join(added)}")
EOF
    # Byte-compiled once here, not at every import (the wheels were unpacked, not installed).
    $PY -m compileall -q -j 0 "$DEPS" > /dev/null || true
    export PYTHONPATH="$DEPS:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    $PY -c "import jax; print('jax', jax.__version__, jax.devices())" || true
    status=0
    $PY bench/backends.py --gpu "$@" || status=$?
    # BENCH_COPY_TO=DIR: the results, the page and the runs' logs also go there.
    if [ -n "${BENCH_COPY_TO:-}" ]; then
        mkdir -p "$BENCH_COPY_TO"
        cp -r bench/results/gpu.json BENCHMARKS.md runs/bench/backends-logs "$BENCH_COPY_TO"/ 2>/dev/null || true
    fi
    exit $status
    ;;
*)
    echo "usage: bash bench/gpu.sh wheels | run [bench/backends.py arguments]"; exit 2 ;;
esac
