#!/usr/bin/env bash
# Creates bench/peers/.venv with NVIDIA AIConfigurator (PyPI `aiconfigurator`, pinned) for run_aiconfigurator.py.
# The wheel ships its own model configs and perf databases (h100_sxm, h200_sxm, b200_sxm, ...), so the comparison
# runs offline on a CPU-only machine. Usage: bash bench/peers/setup_aiconfigurator.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${here}/.venv"
aic_version="0.12.0"   # the version this comparison was measured with (README.md)

if [[ ! -x "${venv}/bin/python" ]]; then
  python3 -m venv "${venv}"
fi
"${venv}/bin/pip" install --quiet --disable-pip-version-check "aiconfigurator==${aic_version}" "aiconfigurator-core==${aic_version}"
"${venv}/bin/python" -c "import importlib.metadata as m; print('aiconfigurator', m.version('aiconfigurator'))"
