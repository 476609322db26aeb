#!/usr/bin/env bash
# The CPU test suite under another torch release, in its own virtual environment (the
# project's own environment is left alone):
#
#   bash tools/torch_version.sh 2.11.0            # venv in /tmp/steepest-torch-2.11.0
#   VENV=/path/to/venv bash tools/torch_version.sh 2.10.0 tests/distributed
#   PYTHON=python3.10 bash tools/torch_version.sh 2.11.0  # venv of another Python
#
# The project goes in editable, with the extras CI installs (docs and typecheck aside). PyPI's
# Linux builds of torch carry CUDA (several GB to download); they run on CPU. Triton comes
# with torch. NumPy stays below 2.4: Triton 3.5 and 3.6 interpret kernels (the tests'
# CPU route) with a conversion that NumPy 2.4 refuses. Every test must pass; those that need a
# GPU skip.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: tools/torch_version.sh TORCH_VERSION [pytest paths...]}"
shift
venv="${VENV:-/tmp/steepest-torch-$version}"
[[ -x "$venv/bin/python" ]] || "${PYTHON:-python}" -m venv "$venv"
constraints="$(mktemp)"
printf 'torch==%s\nnumpy<2.4\n' "$version" > "$constraints"
"$venv/bin/python" -m pip install --quiet -c "$constraints" -e ".[test,experiments,integration]"
"$venv/bin/python" -m pip install --quiet --no-deps timm==1.0.31
"$venv/bin/python" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "${@:-tests}"
