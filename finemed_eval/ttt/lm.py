"""`finemed_ttt`: lm-eval's HFLM plus test-time training (FineMedLM-o1 §3.3).

The flow reads one way: options → retrieval → adaptation → answers. For every test document the
nearest long-form reasoning example(s) are retrieved for its bare question; documents are grouped
by adaptation key (neighbour ids + rendering); each group adapts the model once, answers all its
requests (every option of every document, across all tasks and seeds of the call), and the weights
are restored exactly. With `ttt=off` it is HFLM's scoring (log-likelihoods within 1e-6, identical
generations), minus the LM head on context positions that are never scored.
"""

from __future__ import annotations

import functools
import inspect
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from finemed_eval.ttt.log import TTTLog
from finemed_eval.ttt.options import TTTError, TTTOptions
from finemed_eval.ttt.render import Format
from finemed_eval.zoo import is_embedded

# Keys under which lm-eval and finemed documents carry the bare test question (the retrieval query).
QUERY_FIELDS = ("question", "Question", "sent1", "query", "problem", "input", "text")
LOST_UPDATE = 0.5  # below this changed fraction, most of a full-mode update was rounded away

# HFLM's own arguments, read once (also keeps working when tests replace HFLM.__init__).
_HFLM_PARAMS = frozenset(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs", "pretrained"}
# from_pretrained keywords that are fine to pass through HFLM's **kwargs.
_FROM_PRETRAINED_KWARGS = {"attn_implementation", "low_cpu_mem_usage", "use_safetensors", "local_files_only"}


def _evaluated_tasks() -> dict[str, object]:
    """The task objects of the lm-eval `evaluate` call that is asking us: lm-eval hands a model
    requests, never tasks, and a task's few-shot sampler is only on the task. {} when not found."""
    frame = inspect.currentframe()
    while frame is not None:
        tasks = frame.f_locals.get("eval_tasks") if frame.f_code.co_name == "evaluate" else None
        if isinstance(tasks, dict):
            return {name: getattr(t, "task", t) for name, t in tasks.items()}
        frame = frame.f_back
    return {}


@dataclass(frozen=True)
class Document:
    task: str
    doc_id: int
    query: str
    fmt: Format
    requests: list[tuple[int, Instance]]  # (position in the call, request)


class FineMedTTT(HFLM):
    def __init__(self, pretrained=None, max_loras: int | None = None, **kwargs) -> None:
        hflm_kwargs, ttt_kwargs = _split_kwargs(kwargs)
        embedded = pretrained is None or (isinstance(pretrained, str) and is_embedded(pretrained))
        self._longest_continuation: int | None = None  # set while scoring (see _model_call)
        options = self.ttt_options = TTTOptions.from_model_args(ttt_kwargs, embedded=embedded)
        hflm_kwargs["backend"] = "causal"
        # HFLM's own default is "cuda" even on machines without one.
        hflm_kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        check_dtype_supported(hflm_kwargs.get("dtype"), str(hflm_kwargs["device"]))
        # The engine, corpus, retriever and adapter inputs are checked before the model is loaded.
        resolved = _resolve_pretrained(pretrained)
        engine = self._check_engine(resolved, max_loras)
        corpus = self._load_corpus() if options.ttt != "off" else None
        self._retriever = None if options.reference or corpus is None else self._build_retriever(corpus)
        super().__init__(pretrained=resolved, **hflm_kwargs)
        self._adopt_cpu_data_parallel()
        self._adapter = None
        if options.ttt != "off":
            from finemed_eval.ttt.adapt import Adapter

            self._adapter = Adapter(self._model, self.tokenizer, options, self.max_length)
            self._model = self._adapter.model  # the PeftModel in lora mode; the same module in full mode
        if options.reference and corpus is not None:  # embeds whole conversations: needs the tokenizer
            self._retriever = self._build_retriever(corpus)
        self._vllm = None
        if engine is not None:
            from finemed_eval.ttt.vllm_backend import VLLMAdapterServer

            self._vllm = VLLMAdapterServer(engine, dtype=str(self._model.dtype).replace("torch.", ""))
        self.log = TTTLog(_per_process(options.ttt_log, self.rank, self.world_size))
        self._chat_rendered: dict[str, str | None] = {}  # chat-rendered context -> its system message
        self.adaptations = 0  # adaptations run so far (tests count it)
        self._seed_checked: set[str | None] = set()  # tasks checked for seed-independent exemplars

    # ---- set-up --------------------------------------------------------------------------------
    def _check_engine(self, resolved, max_loras: int | None):
        """engine=vllm: everything checkable before the HF model loads (vLLM, platform, rank, architecture)."""
        o = self.ttt_options
        if o.engine != "vllm":
            if max_loras is not None:
                raise TTTError("finemed_ttt: model argument max_loras is an engine=vllm setting; add engine=vllm or drop it")
            return None
        from finemed_eval.ttt.vllm_backend import check_engine

        if not isinstance(resolved, str):
            raise TTTError("finemed_ttt: engine=vllm loads the model itself: pass pretrained as a path, hub id or zoo name")
        return check_engine(resolved, o.ttt, o.lora_r, max_loras)

    def close(self) -> None:
        """Stop the vLLM engine (if any) and delete its saved adapters. Also done at interpreter exit."""
        if self._vllm is not None:
            self._vllm.close()

    def _load_corpus(self):
        from finemed_eval.ttt.retrieval import load_corpus

        o = self.ttt_options
        return load_corpus(o.corpus, question_field=o.corpus_question_field, response_field=o.corpus_response_field)

    def _build_retriever(self, corpus):
        from finemed_eval.ttt.retrieval import Retriever

        o = self.ttt_options
        if not o.reference:
            return Retriever(corpus, encoder=o.retriever, index=o.retrieval_index, selection=o.selection)
        from finemed_eval.ttt.render import reference_text

        return Retriever(
            corpus, encoder=o.retriever, index="flat", recipe="reference",
            text_of=lambda row: reference_text(self.tokenizer, row.question, row.response),
        )

    def _adopt_cpu_data_parallel(self) -> None:
        """HFLM only shards documents over accelerate processes when it counts >1 GPU; on CPU
        (gloo) every process would evaluate everything. Take rank and world size from accelerate."""
        accelerator = getattr(self, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1 and self._world_size == 1:
            self._rank = accelerator.process_index
            self._world_size = accelerator.num_processes

    # ---- lm-eval request API -------------------------------------------------------------
    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        rendered = super().apply_chat_template(chat_history, add_generation_prompt)
        system = next((m["content"] for m in chat_history if m.get("role") == "system"), None)
        self._chat_rendered[rendered] = system  # its requests are answered in chat: train in chat too
        return rendered

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False):
        self._warn_seed_independent(requests)
        return self._answer(requests, lambda batch: HFLM.loglikelihood(self, batch, disable_tqdm=True), disable_tqdm)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False):
        self._warn_seed_independent(requests)
        return self._answer(requests, lambda batch: HFLM.loglikelihood_rolling(self, batch, disable_tqdm=True), disable_tqdm)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        # The longest continuation bounds where scored positions can start in any batch (see _model_call).
        self._longest_continuation = max((len(continuation) for _, _, continuation in requests), default=None)
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self._longest_continuation = None

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        """HFLM's call, but the LM head and log-softmax run only on the positions that can be scored.

        HFLM keeps the continuation logits of a right-padded row at `inplen - contlen : inplen` where
        `inplen` is shifted by `len(logits) - padded_length`, so returning the last `keep` positions
        selects the same logits. With SmolLM2's 49k vocabulary the head plus its log-softmax is about a
        fifth of a 540-token scoring forward (1.16 s -> 0.91 s on 2 CPU cores; README, Benchmarks).
        Exact up to matmul blocking (tests: within 1e-6 of `hf`)."""
        keep = self._scored_positions(inps) if attn_mask is None and labels is None else None
        if keep is None:
            return super()._model_call(inps, attn_mask, labels)
        with torch.no_grad(), torch.autocast(
            device_type=self.device.type, dtype=self.mixed_precision_dtype, enabled=self.mixed_precision_dtype is not None
        ):
            return self.model(inps, logits_to_keep=keep).logits

    def _scored_positions(self, inps: torch.Tensor) -> int | None:
        """How many trailing positions of this right-padded batch can hold a continuation, or None
        for all of them. A row's real length is at least one past its last non-pad token (pad is 0;
        a real trailing token 0 only makes the bound more generous), and no continuation is longer
        than the longest of the call."""
        longest = self._longest_continuation
        if longest is None or not _accepts_logits_to_keep(_base_type(self.model)):
            return None
        positions = torch.arange(1, inps.shape[1] + 1, device=inps.device)
        real_length = ((inps != 0) * positions).amax(dim=1)  # 0 for an all-pad row
        first_scored = max(int(real_length.min()) - longest, 0)
        keep = inps.shape[1] - first_scored
        return keep if keep < inps.shape[1] else None

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False):
        self._warn_seed_independent(requests)
        if self._vllm is None:
            texts = self._answer(requests, lambda batch: HFLM.generate_until(self, batch, disable_tqdm=True), disable_tqdm)
        else:
            texts = self._generate_on_vllm(requests, disable_tqdm)
        self._log_generations(requests, texts)
        return texts

    def _generate_on_vllm(self, requests: list[Instance], disable_tqdm: bool) -> list[str]:
        """Each adaptation saves its adapter; the documents of up to `max_loras` adaptations are
        answered by one engine call, each with its adaptation's LoRARequest."""
        from finemed_eval.ttt.vllm_backend import engine_request

        eos = self.tokenizer.decode(self.eot_token_id)
        inputs = [
            engine_request(self.tok_encode(r.args[0]), dict(r.args[1] or {}), eos, self.max_gen_toks, self.max_length)
            for r in requests
        ]
        server = self._vllm
        if self._adapter is None or not self.ttt_options.trains:
            server.start(loras_needed=0)
            return server.generate(inputs)
        results: list = [None] * len(requests)
        pending: list[tuple[list[int], object]] = []  # (request positions, their adaptation's LoRARequest)

        def serve() -> None:
            positions = [p for ps, _ in pending for p in ps]
            server.start(loras_needed=len(pending))
            texts = server.generate([inputs[p] for p in positions], [lora for ps, lora in pending for _ in ps])
            for position, text in zip(positions, texts, strict=True):
                results[position] = text
            pending.clear()
            server.trim(keep=server.max_loras)  # the disk holds at most 2 x max_loras adapters

        try:
            with closing(self._adaptations(requests, disable_tqdm)) as adaptations:  # restores on any exit
                for batch, key in adaptations:
                    pending.append(([position for position, _ in batch], server.save_adapter(self._model, key)))
                    if len(pending) >= server.max_loras:
                        serve()
            if pending:
                serve()
        except BaseException:
            server.trim(keep=0)  # nothing half-served stays on disk
            raise
        return results

    def _warn_seed_independent(self, requests: list[Instance]) -> None:
        """Once per task: a few-shot task whose exemplars are the first rows (lm-eval's mmlu, mmlu_pro,
        ceval) gives the same prompts under every seed, so the paper's three seeds are one run three times."""
        from finemed_eval.first_n import draws_first_n, seed_warning

        names = {r.task_name for r in requests} - self._seed_checked
        if not names:
            return
        self._seed_checked |= names
        tasks = _evaluated_tasks()
        for name in sorted(n for n in names if n is not None):
            task = tasks.get(name)
            config = getattr(task, "config", None)
            if config is not None and (config.num_fewshot or 0) > 0 and draws_first_n({"fewshot_config": config.fewshot_config}):
                warnings.warn(seed_warning(name), stacklevel=3)

    # ---- the one loop: retrieve, group by adaptation key, adapt once, answer, restore ----------
    def _answer(self, requests: list[Instance], answer: Callable[[list[Instance]], list], disable_tqdm: bool) -> list:
        if self._adapter is None or not self.ttt_options.trains:
            # Nothing would change the weights (ttt=off, steps=0 or lr=0): answer exactly as HFLM does,
            # batched across documents, so the scores are bit-identical to ttt=off.
            return answer(requests)
        results: list = [None] * len(requests)
        with closing(self._adaptations(requests, disable_tqdm)) as adaptations:  # restores on any exit
            for batch, _ in adaptations:
                answers = answer([request for _, request in batch])
                for (position, _), value in zip(batch, answers, strict=True):
                    results[position] = value
        return results

    def _adaptations(self, requests: list[Instance], disable_tqdm: bool) -> Iterator[tuple[list[tuple[int, Instance]], tuple]]:
        """Retrieve, group documents by adaptation key, and per group yield (its requests with their
        positions, the key) while the model is adapted; the weights are restored when the caller
        asks for the next group (or stops, or raises). Logs a record per document."""
        documents = self._documents(requests)
        found = self._retrieve(documents)
        groups = self._group_by_adaptation(documents, found)
        truncated_before = self._adapter.truncation_count
        lost = 0
        for (fmt, neighbours), docs in tqdm(groups.items(), desc="TTT adaptations", disable=disable_tqdm):
            batch = [item for doc in docs for item in doc.requests]
            key = (fmt, tuple(n.id for n in neighbours))
            cache_key = key if self.ttt_options.cache_bytes else None
            examples = [(n.question, n.response) for n in neighbours]
            started = time.perf_counter()
            with self._adapter.adapted(examples, cache_key=cache_key, fmt=fmt) as stats:
                self.adaptations += 1
                yield batch, key
            total_ms = (time.perf_counter() - started) * 1000
            lost += self._adapter.trainable_dtype in (torch.float16, torch.bfloat16) and stats.changed_fraction < LOST_UPDATE
            self.log.add([self._record(doc, found[doc.query], stats, len(docs), total_ms) for doc in docs])
        self._warn(truncated_before, lost)

    def _documents(self, requests: Sequence[Instance]) -> list[Document]:
        """Requests regrouped per (task, document), in first-seen order, each with its position."""
        by_doc: dict[tuple, list[tuple[int, Instance]]] = {}
        for position, request in enumerate(requests):
            by_doc.setdefault((request.task_name, request.doc_id), []).append((position, request))
        return [
            Document(task, doc_id, query_of(items[0][1]), self._format_of(items[0][1]), items)
            for (task, doc_id), items in by_doc.items()
        ]

    def _retrieve(self, documents: list[Document]) -> dict[str, list]:
        queries = list(dict.fromkeys(doc.query for doc in documents))  # each distinct question embedded once
        return dict(zip(queries, self._retriever.search(queries, k=self.ttt_options.top_k)))

    @staticmethod
    def _group_by_adaptation(documents: list[Document], found: dict[str, list]) -> dict[tuple, list[Document]]:
        """Adaptation key -> its documents. The weights depend on the neighbours and how they are
        rendered, never on the few-shot draw: the seeds of a task share every adaptation."""
        groups: dict[tuple, list[Document]] = {}
        trained_on: dict[tuple, tuple] = {}  # same ids, same rows: scores differ per query, the weights do not
        for doc in documents:
            ids = tuple(n.id for n in found[doc.query])
            neighbours = trained_on.setdefault(ids, tuple(found[doc.query]))
            groups.setdefault((doc.fmt, neighbours), []).append(doc)
        return groups

    def _format_of(self, request: Instance) -> Format:
        """Render the neighbour the way this request was rendered (ttt_format=auto) or as forced."""
        o = self.ttt_options
        if o.reference:
            return Format("reference")
        context = request.args[0]
        chat = context in self._chat_rendered if o.ttt_format == "auto" else o.ttt_format == "chat"
        if chat:
            return Format("chat", system=self._chat_rendered.get(context))
        return Format("plain", add_bos=bool(self.add_bos_token))

    # ---- the model's own log ---------------------------------------------------------------------
    def _record(self, doc: Document, neighbours, stats, shared_by: int, total_ms: float) -> dict:
        return {
            "task": doc.task,
            "doc_id": doc.doc_id,
            "request_type": doc.requests[0][1].request_type,
            "format": doc.fmt.kind,
            "neighbour_selection": self.ttt_options.neighbour_selection,
            "neighbours": [
                {"id": n.id, "row": n.row, "score": round(float(n.score), 6),
                 **({"variance": round(n.variance, 6)} if n.variance is not None else {})}
                for n in neighbours
            ],
            "score_kind": "l2_distance" if self.ttt_options.reference else "cosine",
            **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(stats).items()},
            "shared_by": shared_by,  # documents answered with this one adaptation
            "adapt_and_answer_ms": round(total_ms, 3),
        }

    def _log_generations(self, requests: Sequence[Instance], texts: Sequence[str]) -> None:
        records = []
        for request, text in zip(requests, texts):
            budget = int((request.args[1] or {}).get("max_gen_toks", self.max_gen_toks))
            tokens = len(self.tok_encode(text, add_special_tokens=False))
            # Re-tokenising decoded text can differ by a token; a stop string or eos ends well before.
            records.append({
                "task": request.task_name, "doc_id": request.doc_id, "request_type": "generate_until",
                "generated_tokens": tokens, "max_gen_toks": budget, "hit_token_limit": tokens >= budget - 1,
            })
        self.log.add(records)
        for task, (hits, total) in self.log.token_limit_hits().items():
            if hits:
                warnings.warn(f"finemed_ttt: task {task}: {hits}/{total} generations hit the token limit", stacklevel=3)

    def _warn(self, truncated_before: int, lost: int) -> None:
        if (newly := self._adapter.truncation_count - truncated_before) > 0:
            warnings.warn(
                f"finemed_ttt: {newly} retrieved example(s) were longer than max_length={self.max_length} "
                "tokens and were truncated for adaptation",
                stacklevel=3,
            )
        if lost:
            warnings.warn(
                f"finemed_ttt: in {lost} adaptation(s) fewer than {LOST_UPDATE:.0%} of the weight elements changed: "
                f"{self._adapter.trainable_dtype} rounded most of the update away (use ttt_precision=float32)",
                stacklevel=3,
            )


def query_of(request: Instance) -> str:
    """The bare test question: never the few-shot context or a system prompt."""
    doc = request.doc if isinstance(request.doc, dict) else {}
    for field in QUERY_FIELDS:
        value = doc.get(field)
        if isinstance(value, str) and value.strip():
            return value
    raise TTTError(
        f"finemed_ttt: cannot find the question of document {request.doc_id} of task {request.task_name!r} "
        f"(looked for fields {', '.join(QUERY_FIELDS)}; the document has {', '.join(map(str, doc)) or 'no fields'})"
    )


def check_dtype_supported(dtype, device: str, bf16_supported: Callable[[], bool] | None = None) -> None:
    """A bfloat16 request on a device without bfloat16 fails here, before anything is loaded."""
    if str(dtype).replace("torch.", "") != "bfloat16" or not device.startswith("cuda"):
        return  # CPU computes bfloat16 in software
    supported = bf16_supported or (lambda: torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if not supported():
        raise TTTError(f"finemed_ttt: dtype=bfloat16 was asked for but device {device!r} has no bfloat16 support; use dtype=float16 or float32")


def _base_type(model) -> type:
    return type(model.get_base_model() if hasattr(model, "get_base_model") else model)  # PeftModel passes kwargs on


@functools.cache
def _accepts_logits_to_keep(model_type: type) -> bool:
    """transformers' causal LMs take `logits_to_keep`; a custom or older model may not."""
    return "logits_to_keep" in inspect.signature(model_type.forward).parameters


def _per_process(path: str | None, rank: int, world_size: int) -> str | None:
    """Data-parallel processes each write their own log, in the same folder: ttt.jsonl ->
    ttt.rank0.jsonl; runs.d/ttt -> runs.d/ttt.rank0 (the suffix goes on the file name only)."""
    if path is None or world_size == 1:
        return path
    file = Path(path)
    return str(file.with_name(f"{file.stem}.rank{rank}{file.suffix}"))


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
    if kwargs.get("backend") in ("hf", "vllm"):
        raise TTTError(f"finemed_ttt: backend={kwargs['backend']} is now engine={kwargs['backend']} (backend is HFLM's own argument)")
    unknown = sorted(set(kwargs) - _HFLM_PARAMS - ttt_params - _FROM_PRETRAINED_KWARGS)
    if unknown:
        raise TTTError(
            f"finemed_ttt: unknown model argument(s) {', '.join(map(repr, unknown))}. "
            f"TTT arguments: {', '.join(sorted(ttt_params))}; plus every argument of lm-eval's `hf` model"
        )
    if kwargs.get("backend", "causal") not in ("default", "causal"):
        raise TTTError("finemed_ttt: model argument 'backend' must be 'causal' (TTT needs a causal LM)")
    return {k: v for k, v in kwargs.items() if k not in ttt_params}, {k: v for k, v in kwargs.items() if k in ttt_params}
