"""`engine=vllm`: per-document LoRA adapters served through one vLLM engine (GPU only).

Adapters are trained exactly as in `ttt=lora` (finemed_eval.ttt.adapt), saved with peft, and every
document's generation carries its own `LoRARequest`, so one `LLM.generate` call batches the
generations of many documents. Not run in this project's CI (no GPU): tests drive this module with
a stand-in `vllm` module that records the calls (see tests/test_vllm_backend.py).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any


def sampling_params(gen_kwargs: dict, sampling_params_cls: Any) -> Any:
    """lm-eval generation kwargs -> vLLM SamplingParams (greedy unless do_sample is set)."""
    kwargs = dict(gen_kwargs)
    until = kwargs.pop("until", None) or []
    max_tokens = kwargs.pop("max_gen_toks", 256)
    do_sample = kwargs.pop("do_sample", False)
    temperature = kwargs.pop("temperature", 0.0) if do_sample else 0.0
    return sampling_params_cls(
        max_tokens=max_tokens, stop=[until] if isinstance(until, str) else list(until), temperature=temperature, **kwargs
    )


class VLLMAdapterServer:
    """One vLLM engine over the base model; adapters saved per document (or per neighbour, cached)."""

    def __init__(self, model_path: str, lora_r: int, max_loras: int = 8, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError as error:
            raise ImportError("engine=vllm needs the optional extra: pip install 'finemed-eval[vllm]' (GPU only)") from error
        self._sampling_params_cls = SamplingParams
        self._lora_request_cls = LoRARequest
        self.engine = LLM(model=model_path, enable_lora=True, max_lora_rank=lora_r, max_loras=max_loras, **engine_kwargs)
        self._dir = Path(tempfile.mkdtemp(prefix="finemed-vllm-lora-"))
        self._saved: dict[Hashable, Any] = {}

    def lora_request(self, peft_model: Any, key: Hashable) -> Any:
        """Save the adapter as it is now (inside `Adapter.adapted`) and name it for vLLM.

        The same key (same neighbours, same settings) reuses the saved adapter: vLLM then keeps one
        copy of it loaded for all documents that share it."""
        if key not in self._saved:
            lora_id = len(self._saved) + 1  # vLLM wants positive, unique integer ids
            path = self._dir / f"adapter-{lora_id}"
            peft_model.save_pretrained(str(path))
            self._saved[key] = self._lora_request_cls(f"finemed-{lora_id}", lora_id, str(path))
        return self._saved[key]

    def generate(self, prompts: Sequence[str], gen_kwargs: Sequence[dict], lora_requests: Sequence[Any]) -> list[str]:
        params = [sampling_params(kwargs, self._sampling_params_cls) for kwargs in gen_kwargs]
        outputs = self.engine.generate(list(prompts), params, lora_request=list(lora_requests), use_tqdm=False)
        return [output.outputs[0].text for output in outputs]

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
