"""`finemed_ttt`: lm-eval's HFLM plus test-time training (FineMedLM-o1 §3.3).

For every test document: retrieve the nearest long-form reasoning example for its question, adapt
the model on it, answer ALL of that document's requests, restore the weights exactly. With
`ttt=off` it is HFLM unchanged (same scores, same speed).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from finemed_eval.ttt.options import TTTOptions
from finemed_eval.zoo import is_embedded

# Keys under which lm-eval and finemed documents carry the bare test question (the retrieval query).
QUERY_FIELDS = ("question", "Question", "sent1", "query", "problem", "input", "text")
# Where a document's adaptation record goes (shows up in --log_samples for finemed tasks).
SAMPLE_KEY = "finemed_ttt"

# HFLM's own arguments, read once (also keeps working when tests replace HFLM.__init__).
_HFLM_PARAMS = frozenset(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs", "pretrained"}
# from_pretrained keywords that are fine to pass through HFLM's **kwargs.
_FROM_PRETRAINED_KWARGS = {"attn_implementation", "low_cpu_mem_usage", "use_safetensors", "local_files_only"}


class FineMedTTT(HFLM):
    def __init__(self, pretrained=None, **kwargs) -> None:
        hflm_kwargs, ttt_kwargs = _split_kwargs(kwargs)
        embedded = pretrained is None or (isinstance(pretrained, str) and is_embedded(pretrained))
        self.ttt_options = TTTOptions.from_model_args(ttt_kwargs, embedded=embedded)
        if hflm_kwargs.get("backend", "default") not in ("default", "causal"):
            raise ValueError("finemed_ttt: model argument 'backend' must be 'hf' or 'vllm' (TTT needs a causal LM)")
        hflm_kwargs["backend"] = "causal"
        # HFLM's own default is "cuda" even on machines without one.
        hflm_kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        # Retrieval and adapter set-up validate their inputs before the model is loaded.
        self._retriever = self.ttt_options.build_retriever()
        resolved = _resolve_pretrained(pretrained)
        super().__init__(pretrained=resolved, **hflm_kwargs)
        self._adapter = self.ttt_options.build_adapter(self._model, self.tokenizer, self.max_length)
        if self._adapter is not None:
            self._model = self._adapter.model  # the PeftModel in lora mode; the same module in full mode
        self._vllm = None
        if self.ttt_options.backend == "vllm":
            from finemed_eval.ttt.vllm_backend import VLLMAdapterServer

            self._vllm = VLLMAdapterServer(str(resolved), lora_r=self.ttt_options.lora_r)
        self.adaptations = 0  # documents adapted so far (tests count it)

    # ---- lm-eval request API -------------------------------------------------------------
    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False):
        return self._per_document(requests, super().loglikelihood, disable_tqdm)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False):
        return self._per_document(requests, super().loglikelihood_rolling, disable_tqdm)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False):
        if self._vllm is not None:
            return self._generate_with_vllm(requests, disable_tqdm)
        return self._per_document(requests, super().generate_until, disable_tqdm)

    def _generate_with_vllm(self, requests: list[Instance], disable_tqdm: bool) -> list[str]:
        """Adapt per document on the HF copy, save each adapter, then ONE batched vLLM call."""
        lora_requests: list = [None] * len(requests)
        if self._adapter is not None and self._adapter.config.trains:
            groups = group_by_document(requests)
            neighbours = self._retriever.search([query_of(group[0]) for group in groups], k=self.ttt_options.top_k)
            for group, found in tqdm(list(zip(groups, neighbours)), desc="TTT adapters", disable=disable_tqdm):
                key = tuple(n.id for n in found)
                with self._adapter.adapted([(n.question, n.response) for n in found], cache_key=key) as stats:
                    self.adaptations += 1
                    lora = self._vllm.lora_request(self._adapter.model, key)
                _record(group, found, stats)
                for position, _ in group:
                    lora_requests[position] = lora
        contexts = [request.args[0] for request in requests]
        gen_kwargs = [request.args[1] for request in requests]
        return self._vllm.generate(contexts, gen_kwargs, lora_requests)

    # ---- test-time training -----------------------------------------------------------------
    def _per_document(self, requests: list[Instance], answer: Callable, disable_tqdm: bool) -> list:
        if self._adapter is None or not self._adapter.config.trains:
            # Nothing would change the weights (ttt=off, steps=0 or lr=0): answer exactly as HFLM does,
            # batched across documents, so the scores are bit-identical to ttt=off.
            return answer(requests, disable_tqdm=disable_tqdm)
        groups = group_by_document(requests)
        queries = [query_of(group[0]) for group in groups]
        neighbours = self._retriever.search(queries, k=self.ttt_options.top_k)
        results: list = [None] * len(requests)
        truncated_before = self._adapter.truncation_count
        for group, found in tqdm(list(zip(groups, neighbours)), desc="TTT documents", disable=disable_tqdm):
            examples = [(n.question, n.response) for n in found]
            cache_key = tuple(n.id for n in found) if self.ttt_options.cache_bytes else None
            with self._adapter.adapted(examples, cache_key=cache_key) as stats:
                self.adaptations += 1
                answers = answer([request for _, request in group], disable_tqdm=True)
            _record(group, found, stats)
            for (position, _), value in zip(group, answers, strict=True):
                results[position] = value
        if (newly := self._adapter.truncation_count - truncated_before) > 0:
            warnings.warn(
                f"finemed_ttt: {newly} retrieved example(s) were longer than max_length={self._adapter.config.max_length} "
                "tokens and were truncated for adaptation",
                stacklevel=2,
            )
        return results


def group_by_document(requests: Sequence[Instance]) -> list[list[tuple[int, Instance]]]:
    """Requests regrouped per (task, document), in first-seen order, each with its original position.

    lm-eval hands over all requests of a request type at once and HFLM reorders them by length; grouping
    first means one adaptation serves all of a document's requests and adapted states never interleave.
    """
    groups: dict[tuple, list[tuple[int, Instance]]] = {}
    for position, request in enumerate(requests):
        groups.setdefault((request.task_name, request.doc_id), []).append((position, request))
    return list(groups.values())


def query_of(item: tuple[int, Instance]) -> str:
    """The bare test question: never the few-shot context or a system prompt."""
    _, request = item
    doc = request.doc if isinstance(request.doc, dict) else {}
    for field in QUERY_FIELDS:
        value = doc.get(field)
        if isinstance(value, str) and value.strip():
            return value
    raise ValueError(
        f"finemed_ttt: cannot find the question of document {request.doc_id} of task {request.task_name!r} "
        f"(looked for fields {', '.join(QUERY_FIELDS)}; the document has {', '.join(map(str, doc)) or 'no fields'})"
    )


def _record(group, neighbours, stats) -> None:
    """Attach the adaptation record to the document dict, which lm-eval logs with --log_samples."""
    record = {
        "neighbours": [{"id": n.id, "similarity": round(float(n.score), 6)} for n in neighbours],
        **asdict(stats),
    }
    _, request = group[0]
    if isinstance(request.doc, dict):
        request.doc[SAMPLE_KEY] = record


def _resolve_pretrained(pretrained):
    if pretrained is None:
        from finemed_eval.embedded import embedded_model_dir

        return str(embedded_model_dir())
    if isinstance(pretrained, str):
        from finemed_eval.zoo import resolve_pretrained

        return resolve_pretrained(pretrained)
    return pretrained


def _split_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """HFLM's own arguments vs ours; anything else is an error naming the argument."""
    ttt_params = TTTOptions.argument_names()
    unknown = sorted(set(kwargs) - _HFLM_PARAMS - ttt_params - _FROM_PRETRAINED_KWARGS - {"backend"})
    if unknown:
        raise ValueError(
            f"finemed_ttt: unknown model argument(s) {', '.join(map(repr, unknown))}. "
            f"TTT arguments: {', '.join(sorted(ttt_params))}; plus every argument of lm-eval's `hf` model"
        )
    hflm = {k: v for k, v in kwargs.items() if k not in ttt_params}
    ttt = {k: v for k, v in kwargs.items() if k in ttt_params}
    if hflm.get("backend") in ("hf", "vllm"):
        ttt["backend"] = hflm.pop("backend")
    return hflm, ttt
