"""The TTT model arguments of `finemed_ttt`, validated before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

MODES = ("off", "full", "lora")
BACKENDS = ("hf", "vllm")
ONLINE_CORPUS = "hongzhouyu/FineMed-SFT"
OFFLINE_CORPUS = "demo"  # the project's own long-form reasoning examples (finemed_eval/demo)


@dataclass(frozen=True)
class TTTOptions:
    ttt: str = "off"
    corpus: str | None = None  # None: the paper's FineMed long-form data online, the demo corpus for the embedded model
    corpus_question_field: str = "question"
    corpus_response_field: str = "response"
    retriever: str | None = None  # None: bge-large-en-v1.5 online, the embedded MiniLM for the embedded model
    retrieval_index: str = "flat"
    top_k: int = 1
    lr: float = 1e-5
    steps: int = 1
    lora_r: int = 16
    lora_alpha: int = 32
    cache: bool | int = True  # neighbour cache: True (2 GiB budget), False, or a budget in MiB
    backend: str = "hf"

    @classmethod
    def argument_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_model_args(cls, args: dict, embedded: bool) -> TTTOptions:
        options = cls(**args)
        if options.corpus is None:
            options = replace(options, corpus=OFFLINE_CORPUS if embedded else ONLINE_CORPUS)
        if options.retriever is None:
            options = replace(options, retriever="minilm" if embedded else "bge-large")
        options.validate()
        return options

    def validate(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"finemed_ttt: model argument {field}={getattr(self, field)!r} {why}")

        if self.ttt not in MODES:
            raise bad("ttt", f"must be one of {', '.join(MODES)}")
        if self.backend not in BACKENDS:
            raise bad("backend", f"must be one of {', '.join(BACKENDS)}")
        if self.backend == "vllm" and self.ttt == "full":
            raise bad("backend", "serves LoRA adapters only: use ttt=lora or ttt=off with backend=vllm")
        for name in ("lr",):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                raise bad(name, "must be a number >= 0")
        for name in ("steps", "top_k", "lora_r", "lora_alpha"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "steps" else 1):
                raise bad(name, "must be an integer >= " + ("0" if name == "steps" else "1"))
        if isinstance(self.cache, bool):
            return
        if not isinstance(self.cache, int) or self.cache < 0:
            raise bad("cache", "must be true, false or a budget in MiB >= 0")

    @property
    def cache_bytes(self) -> int:
        if self.cache is True:
            return 2 * 1024**3
        return int(self.cache) * 1024**2

    def build_retriever(self):
        if self.ttt == "off":
            return None
        from finemed_eval.ttt.retrieval import Retriever, load_corpus

        corpus = load_corpus(
            self.corpus, question_field=self.corpus_question_field, response_field=self.corpus_response_field
        )
        return Retriever(corpus, encoder=self.retriever, index=self.retrieval_index)

    def build_adapter(self, model, tokenizer, max_length: int):
        if self.ttt == "off":
            return None
        from finemed_eval.ttt.adapt import AdaptConfig, Adapter

        config = AdaptConfig(
            mode=self.ttt,
            lr=float(self.lr),
            steps=self.steps,
            max_length=max_length,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            cache_bytes=self.cache_bytes,
        )
        return Adapter(model, tokenizer, config)

