#!/usr/bin/env bash
# Creates tools/.venv and installs what tools/count_params.py needs.
# Usage: bash tools/setup_venv.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --upgrade pip
# torch comes from PyPI (only parameter shapes are needed; no GPU is used).
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL are honoured by pip if a CPU-only wheel index is wanted.
"$venv/bin/python" -m pip install -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import torch, transformers, accelerate
print("torch", torch.__version__, "transformers", transformers.__version__, "accelerate", accelerate.__version__)
PY
