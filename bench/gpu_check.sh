#!/usr/bin/env bash
# Times resnet18, mobilenet_v3_small and a transformer encoder on the CUDA GPU (eager and
# torch.compile, fp32 and fp16, batch 1 and 32) and prints a markdown table; see gpu_check.py.
# Needs only a Python with torch + torchvision. Where there is no CUDA device it says so and exits 0.
#   bench/gpu_check.sh [--json FILE] [--budget-s 420] [--device cpu --small]   (PYTHON=... to choose)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

has_torch() { "$1" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' 2>/dev/null; }
py=""
for cand in "${PYTHON:-}" "$root/.venv/bin/python" "$(command -v python3 || true)"; do
  if [ -n "$cand" ] && [ -x "$cand" ] && has_torch "$cand"; then py="$cand"; break; fi
done
if [ -z "$py" ]; then
  echo "no CUDA check: no Python with torch found (set PYTHON=...)"
  exit 2
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$py" "$here/gpu_check.py" "$@"
