#!/usr/bin/env bash
# Creates tools/aic_export/.venv and installs what tools/aic_export/export.py needs
# (aiconfigurator-core from PyPI, which ships the measurement tables, plus pandas, pyarrow, pyyaml).
# Usage: bash tools/aic_export/setup_venv.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for dist in ("aiconfigurator-core", "pandas", "pyarrow", "PyYAML"):
    print(dist, md.version(dist))
PY
