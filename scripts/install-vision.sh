#!/usr/bin/env bash
# Optional: what `histodiff metrics --features inception|torchvision:NAME` needs.
# torchvision is built for one torch release (torch 2.N <-> torchvision 0.(N+15)),
# and torch-fidelity asks for any torchvision, so a plain `pip install
# torch-fidelity` would replace the installed torch by the newest one. This
# script installs the torchvision made for the torch that is there, then
# torch-fidelity, and checks that torch did not change.
# Note: PyPI's Linux torchvision wheels are built against CUDA torch; with a
# CPU-only torch (+cpu) torchvision's compiled operators do not load and
# `import torchvision` fails; use the CPU wheel index of PyTorch there.
set -euo pipefail
PY="${1:-.venv/bin/python}"
before="$("$PY" -c 'import torch; print(torch.__version__)')"
minor="$("$PY" -c 'import torch; print(int(torch.__version__.split(".")[1]))')"
major="$("$PY" -c 'import torch; print(int(torch.__version__.split(".")[0]))')"
if [ "$major" != "2" ]; then
  echo "install-vision: torch $before: no known torchvision pairing" >&2
  exit 1
fi
"$PY" -m pip install -q "torchvision==0.$((minor + 15)).*" "torch-fidelity>=0.3"
after="$("$PY" -c 'import torch; print(torch.__version__)')"
if [ "$before" != "$after" ]; then
  echo "install-vision: torch changed from $before to $after" >&2
  exit 1
fi
"$PY" -c "import torchvision, torch_fidelity" || {
  echo "install-vision: torchvision does not import with torch $after" >&2
  exit 1
}
