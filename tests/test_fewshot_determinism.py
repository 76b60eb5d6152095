"""Few-shot exemplars are a function of (task, few-shot seed, document) alone.

lm-eval's sampler draws from one random stream per task, in the order a process builds its documents'
contexts; FineMedTask re-seeds it per document, so one process, N data-parallel processes, --limit,
--samples and any document order give the same prompts. Real lm-eval, real release files, real gloo.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from finemed_eval.training.launch import free_port

pytestmark = pytest.mark.file_seconds(160)  # under -n 2 on 2 cores (CI): starts before shorter files

TASK = "finemed_demo"
SEEDS = (7, 1234)  # the paper's protocol: random 3-shot exemplars under several seeds
SHOTS = 3


def _task(task_manager, name: str, seed: int | None):
    task = task_manager.load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=SHOTS)
    task.set_fewshot_seed(seed)
    return task


def _built(task, **where) -> dict[str, str]:
    """question -> prompt for the documents build_all_requests gives one process (rank, limit, samples)."""
    task.build_all_requests(**where)
    return {inst.doc["question"]: inst.arguments[0] for inst in task.instances if inst.idx == 0}


def _one_pass(task) -> dict[str, str]:
    return {doc["question"]: task.fewshot_context(doc, SHOTS) for doc in task.eval_docs}


@pytest.mark.parametrize("name", ["finemed_demo", "finemed_medmcqa_cot"])  # medmcqa: exemplars from the evaluated split
def test_prompts_do_not_depend_on_processes_limit_samples_or_order(task_manager, local_data, name):
    task = _task(task_manager, name, 1234)
    docs = list(task.eval_docs)[:30]
    reference = {doc["question"]: task.fewshot_context(doc, SHOTS) for doc in docs}
    shuffled = docs[:]
    random.Random(3).shuffle(shuffled)
    assert {doc["question"]: task.fewshot_context(doc, SHOTS) for doc in shuffled} == reference

    # what each of N data-parallel processes builds (lm-eval deals documents round-robin), every
    # process seeding its own task object; then --limit and --samples (documents renumbered from 0)
    for world_size in (2, 3):
        merged: dict[str, str] = {}
        for rank in range(world_size):
            task.set_fewshot_seed(1234)
            merged |= _built(task, rank=rank, world_size=world_size, limit=len(docs))
        assert merged == reference
    task.set_fewshot_seed(1234)
    assert _built(task, limit=7) == {doc["question"]: reference[doc["question"]] for doc in docs[:7]}
    picks = [21, 4, 13]
    assert _built(task, samples=picks) == {docs[i]["question"]: reference[docs[i]["question"]] for i in picks}
    for doc in docs:  # a document is never its own exemplar (MedMCQA draws from its own split)
        assert reference[doc["question"]].count(doc["question"]) == 1
        assert reference[doc["question"]].count("Question:") == SHOTS + 1


def test_seeds_give_different_exemplars_and_the_same_seed_the_same_prompts(task_manager, local_data):
    by_seed = {seed: _one_pass(_task(task_manager, "finemed_medqa", seed)) for seed in (0, 1)}
    differing = sum(by_seed[0][q] != by_seed[1][q] for q in by_seed[0])
    assert differing > 0.9 * len(by_seed[0])  # different exemplar sets per seed, as lm-eval's seeds give
    assert _one_pass(_task(task_manager, "finemed_medqa", 1)) == by_seed[1]  # a fresh task object, same prompts


def test_leaderboard_seed_copies_prompt_like_stock_lm_eval(task_manager):
    """The leaderboard renames its per-seed task copies (`<task>@seed<s>`); their prompts stay those
    of `lm_eval --seed ...,<s>` for the task's own name."""
    from finemed_eval.leaderboard.evaluate import seed_variants

    variants = seed_variants(task_manager, TASK, list(SEEDS), SHOTS)["tasks"]
    for seed in SEEDS:
        renamed = variants[f"{TASK}@seed{seed}"]
        assert _one_pass(renamed) == _one_pass(_task(task_manager, TASK, seed))


def _prompts_and_loglikelihoods(rows: list[dict]) -> dict[int, tuple[str, list[float]]]:
    """doc_id -> (prompt, one log-likelihood per choice) from --log_samples records (file or in-process)."""
    out = {}
    for row in rows:
        arguments = row["arguments"]  # in process: [(context, continuation), ...]; in the file: its dict form
        if isinstance(arguments, str):
            arguments = ast.literal_eval(arguments)
        if isinstance(arguments, dict):
            arguments = [(args["arg_0"], args["arg_1"]) for args in arguments.values()]
        prompts = {context for context, _ in arguments}
        assert len(prompts) == 1  # every choice of a document is scored after the same prompt
        out[int(row["doc_id"])] = (prompts.pop(), [float(resp[0][0]) for resp in row["resps"]])
    return out


def test_two_gloo_processes_give_one_process_prompts_loglikelihoods_and_ttt(embedded_model, task_manager, tmp_path):
    """`accelerate launch -m lm_eval` on 2 CPU (gloo) processes, 3-shot, two few-shot seeds: every
    document gets the prompt (and so the log-likelihoods) one process gives it. The second seed's runs
    do TTT (LoRA, a 3-row corpus: documents share neighbours): documents are split between the
    processes, each adapts for its own (its TTT log), and the merged results equal one process's.
    (One launch per seed, each asserting both: every launch costs 2 interpreters and 2 task indexes.)"""
    import lm_eval
    from lm_eval.api.registry import get_model

    from finemed_eval.data import DEMO_DIR

    limit = 8
    small_corpus = tmp_path / "small.jsonl"  # three rows, as test_ttt.py's small corpus
    small_corpus.write_text("\n".join((DEMO_DIR / "reasoning_corpus.jsonl").read_text().splitlines()[-3:]))
    ttt_args = dict(ttt="lora", lr=1e-3, corpus=str(small_corpus), retriever="minilm", max_length=256)
    args = {SEEDS[0]: dict(ttt="off"), SEEDS[1]: ttt_args}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    # --multi_gpu + ACCELERATE_USE_CPU: two processes in one gloo group (`--cpu` would start one)
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    runs: dict[int, subprocess.Popen] = {}
    try:
        for seed in SEEDS:  # both launches at once: each process runs on one thread
            model_args = ",".join(f"{k}={v}" for k, v in {"pretrained": embedded_model, **args[seed]}.items())
            if seed == SEEDS[1]:
                model_args += f",ttt_log={tmp_path / 'ttt.jsonl'}"
            # one rendezvous port per launch: the seeds start together and would all take 29500
            port = ["--main_process_port", str(free_port())]
            command = [*launcher, *port, "-m", "lm_eval", "run", "--model", "finemed_ttt", "--model_args", model_args,
                       "--tasks", TASK, "--num_fewshot", str(SHOTS), "--seed", f"0,1234,1234,{seed}", "--limit",
                       str(limit), "--log_samples", "--batch_size", "4", "--device", "cpu",
                       "--output_path", str(tmp_path / str(seed))]
            runs[seed] = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                          start_new_session=True)  # its own group: the workers go with it
        # one process, in this one, meanwhile: the same model arguments and batch size
        single = {}
        for seed in SEEDS:
            lm = get_model("finemed_ttt")(pretrained=str(embedded_model), device="cpu", batch_size=4, **args[seed])
            results = lm_eval.simple_evaluate(model=lm, tasks=[TASK], num_fewshot=SHOTS, fewshot_random_seed=seed,
                                              limit=limit, log_samples=True, task_manager=task_manager)
            single[seed] = _prompts_and_loglikelihoods(results["samples"][TASK])
        stderr = {seed: run.communicate(timeout=600)[1] for seed, run in runs.items()}
    finally:
        for run in runs.values():  # a failure above must not leave the launchers running
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()

    for seed, run in runs.items():
        assert run.returncode == 0, stderr[seed][-3000:]
        (samples,) = (tmp_path / str(seed)).rglob(f"samples_{TASK}_*.jsonl")
        parallel = _prompts_and_loglikelihoods([json.loads(line) for line in samples.read_text().splitlines()])
        assert sorted(parallel) == sorted(single[seed]) == list(range(limit))
        for doc_id, (prompt, loglikelihoods) in single[seed].items():
            assert parallel[doc_id][0] == prompt, f"seed {seed}, document {doc_id}: other exemplars"
            assert prompt.count("Question:") == SHOTS + 1
            # batches hold other documents in each process, so padding differs: float32 noise, same answers
            assert parallel[doc_id][1] == pytest.approx(loglikelihoods, rel=1e-5)
            argmax = max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)
            assert argmax == max(range(len(parallel[doc_id][1])), key=parallel[doc_id][1].__getitem__)
    assert single[SEEDS[0]][1][0] != single[SEEDS[1]][1][0]  # the two seeds really drew other exemplars
    # TTT: both processes really adapted, each for its own documents
    per_rank = [[json.loads(line)["doc_id"] for line in (tmp_path / f"ttt.rank{k}.jsonl").read_text().splitlines()] for k in (0, 1)]
    assert per_rank[0] and per_rank[1], stderr[SEEDS[1]][-2000:]
    assert sorted(per_rank[0] + per_rank[1]) == list(range(limit))


# --------------------------------------------------------------------------- lm-eval's built-in tasks


@pytest.fixture(scope="module")
def builtin_copies(shared_data, tmp_path_factory) -> Path:
    """lm-eval's own mmlu_anatomy (first_n sampler) and medmcqa (default sampler) YAMLs, pointed at the
    local release files (the hub is offline here); only the data source is replaced."""
    import lm_eval

    builtin = Path(lm_eval.__file__).parent / "tasks"
    folder = tmp_path_factory.mktemp("builtin")
    for split in ("dev", "test"):
        rows = [{"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5])}
                for r in csv.reader((shared_data / "mmlu" / split / f"anatomy_{split}.csv").open(encoding="utf-8"))]
        (folder / f"anatomy_{split}.jsonl").write_text("\n".join(map(json.dumps, rows)))
    (folder / "mmlu_anatomy_local.yaml").write_text(
        f"include: {builtin}/mmlu/default/_default_template_yaml\ntask: mmlu_anatomy_local\ndataset_path: json\n"
        f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    test: {folder}/anatomy_test.jsonl\n"
        f"    dev: {folder}/anatomy_dev.jsonl\n"
    )
    rows = [json.loads(line) for line in (shared_data / "medmcqa" / "validation.jsonl").read_text().splitlines()]
    (folder / "medmcqa.jsonl").write_text("\n".join(json.dumps({**r, "cop": int(r["cop"])}) for r in rows))
    (folder / "medmcqa_local.yaml").write_text(  # MedMCQA's train split is not in ../shared/data: validation stands in
        f"include: {builtin}/medmcqa/medmcqa.yaml\ntask: medmcqa_local\ndataset_path: json\ndataset_kwargs:\n"
        f"  data_files:\n    train: {folder}/medmcqa.jsonl\n    validation: {folder}/medmcqa.jsonl\n"
    )
    return folder


@pytest.mark.parametrize("name, sampler, differs", [("mmlu_anatomy_local", "first_n", False), ("medmcqa_local", "default", True)])
def test_what_lm_evals_builtin_tasks_do_under_data_parallelism(builtin_copies, name, sampler, differs):
    """What README says about lm-eval's own tasks: first_n exemplars (mmlu, mmlu_pro, ceval) are the
    same for any number of processes (and any seed); the default sampler's (medqa_4options, medmcqa)
    change with the number of processes. If lm-eval changes this, README must change with it."""
    from lm_eval.tasks import TaskManager

    task = TaskManager(include_defaults=False, include_path=str(builtin_copies)).load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=SHOTS)
    assert task.fewshot_cfg.sampler == sampler

    def prompts(world_size: int) -> dict[str, str]:
        merged: dict[str, str] = {}
        for rank in range(world_size):
            task.set_fewshot_seed(1234)  # each process seeds its own task object
            merged |= _built(task, rank=rank, world_size=world_size, limit=12)
        return merged

    one, two = prompts(1), prompts(2)
    changed = sum(one[q] != two[q] for q in one)
    assert (changed >= 10) if differs else (changed == 0)
