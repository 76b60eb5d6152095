"""The run: input -> instruction -> scoring -> filter -> answer -> longform -> reward -> sft -> classify.

Model stages are datatrove pipelines (JsonlReader -> InferenceRunner -> JsonlWriter) run by a datatrove
executor (local, Slurm or Ray) with per-record checkpoints; the same config runs anywhere. Each stage
reads the sealed, sorted output of the stages before it and is sealed in turn (see records.py), so a
rerun skips sealed stages and resumes an interrupted one from datatrove's checkpoints.

Layout of the output folder:
    manifest.json                 input hash + output-shaping settings (a changed input refuses to resume)
    input/part-*.jsonl            the raw texts, sorted into `executor.tasks` parts
    stages/NN_<stage>/input/      that stage's input parts (model stages)
                     /shards/     datatrove's output shards, /checkpoints/, /logs/
                     /ok/part-*.jsonl, rejects.jsonl, DONE (counts, reasons, tokens, seconds)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .config import SynthConfig
from .inputs import check_manifest, load_texts, manifest
from .records import (
    RecordError,
    is_done,
    mark_done,
    ok_records,
    read_folder,
    seal,
    write_parts,
)
from .stages import MODEL_STAGES, ROLLOUTS, dpo_record, filter_record, sft_record

STAGES = ("instruction", "scoring", "filter", "answer", "longform", "reward", "sft", "classify")


def stage_dir(out: Path, name: str) -> Path:
    return out / "stages" / f"{STAGES.index(name) + 1:02d}_{name}"


def _flatten(writer, document) -> dict:
    return document.metadata["rollout_results"][0]


def _executor(config: SynthConfig, pipeline: list, logging_dir: Path, name: str):
    spec = config.executor
    if spec.type == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        options = {"time": "24:00:00", "partition": "gpu", "job_name": f"finemed-synth-{name}"} | spec.slurm
        return SlurmPipelineExecutor(pipeline=pipeline, tasks=spec.tasks, logging_dir=str(logging_dir), **options)
    if spec.type == "ray":
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(pipeline=pipeline, tasks=spec.tasks, workers=spec.workers, logging_dir=str(logging_dir), **spec.ray)
    if spec.workers == 1:
        return _InProcessExecutor(pipeline=pipeline, tasks=spec.tasks, workers=1, logging_dir=str(logging_dir))
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(pipeline=pipeline, tasks=spec.tasks, workers=spec.workers, logging_dir=str(logging_dir))


def _in_process_executor_class():
    from copy import deepcopy

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.utils.stats import PipelineStats

    class InProcessExecutor(LocalPipelineExecutor):
        """LocalPipelineExecutor for one worker, minus its multiprocess.Manager: that extra process
        outlives a kill -9 of the run (it was found orphaned here) and costs a process per stage."""

        def run(self):
            ranks = self.get_incomplete_ranks(range(self.local_rank_offset, self.local_rank_offset + self.local_tasks))
            if not ranks:
                return None
            self.save_executor_as_json()
            pipeline, stats = self.pipeline, []
            for rank in ranks:
                self.pipeline = deepcopy(pipeline)
                stats.append(self._run_for_rank(rank, 0))
            merged = sum(stats, start=PipelineStats())
            with self.logging_dir.open("stats.json", "wt") as handle:
                merged.save_to_disk(handle)
            return merged

    return InProcessExecutor


def _InProcessExecutor(**kwargs):
    return _in_process_executor_class()(**kwargs)


def _wait_for_tasks(logging_dir: Path, tasks: int, poll_s: float = 30.0) -> None:
    """Slurm's executor returns once the array is submitted: wait for every task's completion file."""
    completions = logging_dir / "completions"
    while not completions.is_dir() or len(list(completions.glob("*"))) < tasks:
        time.sleep(poll_s)


def _count_lines(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*.jsonl"):
        try:
            with open(path, "rb") as handle:
                total += sum(1 for _ in handle)
        except OSError:
            pass
    return total


class _Progress:
    """A tqdm bar for one datatrove stage, fed by counting written records (records/s shown)."""

    def __init__(self, folder: Path, total: int, name: str, enabled: bool):
        from tqdm import tqdm

        self.folder, self.stop = folder, threading.Event()
        self.bar = tqdm(total=total, desc=name, unit="rec", disable=not enabled, initial=_count_lines(folder))
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.wait(1.0):
            self.bar.n = min(_count_lines(self.folder), self.bar.total)
            self.bar.refresh()

    def __enter__(self):
        if not self.bar.disable:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.bar.n = min(_count_lines(self.folder), self.bar.total)
        self.bar.close()


def _model_stage(config: SynthConfig, out: Path, name: str, make_input: Callable[[], list[dict]], progress: bool) -> dict:
    return run_model_stage(config, stage_dir(out, name), name, make_input, progress)


def run_model_stage(
    config: SynthConfig, folder: Path, name: str, make_input: Callable[[], list[dict]], progress: bool
) -> dict:
    """One datatrove stage in `folder`: input parts -> rollout `name` -> shards -> sealed ok/rejects."""
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from .backends import SynthInferenceRunner, inference_config

    if is_done(folder):
        return json.loads((folder / "DONE").read_text(encoding="utf-8"))
    if not is_done(folder / "input"):
        records = make_input()
        write_parts(folder / "input", records, config.executor.tasks)
        mark_done(folder / "input", {"records": len(records)})
    expected = sorted(str(r["id"]) for r in read_folder(folder / "input", "part-*.jsonl"))
    started = time.monotonic()
    if expected:
        role = config.role(MODEL_STAGES[name])
        runner = SynthInferenceRunner(
            rollout_fn=ROLLOUTS[name],
            config=inference_config(role, str(folder / "logs" / "server")),
            output_writer=JsonlWriter(
                str(folder / "shards"), output_filename="${rank}_chunk_${chunk_index}.jsonl", compression=None, adapter=_flatten
            ),
            shared_context={"config": config},
            checkpoints_local_dir=str(folder / "checkpoints"),
            records_per_chunk=config.executor.records_per_chunk,
            backend=role.backend,
        )
        reader = JsonlReader(str(folder / "input"), glob_pattern="part-*.jsonl", compression=None, add_file_path=False)
        executor = _executor(config, [reader, runner], folder / "logs", name)
        with _Progress(folder / "shards", len(expected), name, progress):
            executor.run()
            if config.executor.type == "slurm":
                _wait_for_tasks(folder / "logs", config.executor.tasks)
        completions = folder / "logs" / "completions"
        if config.executor.type == "local" and len(list(completions.glob("*"))) < config.executor.tasks:
            raise RecordError(f"stage {name}: a datatrove task failed (see {folder / 'logs'}); rerun to resume")
    records = read_folder(folder / "shards", "*.jsonl")
    got = sorted({str(r["id"]) for r in records})
    if got != expected:
        missing = sorted(set(expected) - set(got))[:5]
        raise RecordError(f"stage {name}: {len(set(expected) - set(got))} input record(s) have no output, e.g. {missing}")
    summary = seal(folder, records, config.executor.tasks)
    return _with_time(folder, summary, time.monotonic() - started)


def _with_time(folder: Path, summary: dict, seconds: float) -> dict:
    summary = summary | {"seconds": round(seconds, 3)}
    mark_done(folder, summary)
    return summary


def _pure_stage(config: SynthConfig, out: Path, name: str, make: Callable[[], list[dict]]) -> dict:
    folder = stage_dir(out, name)
    started = time.monotonic()
    return _with_time(folder, seal(folder, make(), config.executor.tasks), time.monotonic() - started)


def _by_id(records: list[dict]) -> dict[str, dict]:
    return {str(r["id"]): r for r in records}


def run(config: SynthConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every stage; return {stage: summary}."""
    out = Path(config.output)
    texts = load_texts(config)  # validates every row before any model call
    current = manifest(config, texts)
    check_manifest(out / "manifest.json", current)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "manifest.json").is_file():
        tmp = out / ".manifest.json.tmp"
        tmp.write_text(json.dumps(current, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(out / "manifest.json")
    if not is_done(out / "input"):
        write_parts(out / "input", texts, config.executor.tasks)
        mark_done(out / "input", {"records": len(texts)})

    def ok(name: str) -> list[dict]:
        return ok_records(stage_dir(out, name))

    def slim(record: dict, keys: tuple[str, ...]) -> dict:
        return {k: record[k] for k in ("id", "text", *keys) if k in record}

    steps: list[tuple[str, Callable[[], dict]]] = [
        ("instruction", lambda: _model_stage(config, out, "instruction", lambda: texts, progress)),
        ("scoring", lambda: _model_stage(
            config, out, "scoring", lambda: [slim(r, ("question1", "question2")) for r in ok("instruction")], progress)),
        ("filter", lambda: _pure_stage(config, out, "filter", lambda: [filter_record(r, config) for r in ok("scoring")])),
        ("answer", lambda: _model_stage(config, out, "answer", lambda: ok("filter"), progress)),
        ("longform", lambda: _model_stage(
            config, out, "longform", lambda: [r for r in ok("filter") if r["instruction_type"] == "complex"], progress)),
        ("reward", lambda: _reward_stage(config, out, progress)),
        ("sft", lambda: _pure_stage(config, out, "sft", lambda: _sft_records(config, out))),
        ("classify", lambda: _model_stage(config, out, "classify", lambda: ok("sft"), progress)),
    ]
    summaries = {}
    for name, step in steps:
        folder = stage_dir(out, name)
        if is_done(folder):
            summaries[name] = json.loads((folder / "DONE").read_text(encoding="utf-8"))
            log(f"{name}: done earlier ({summaries[name]['ok']} ok, {summaries[name]['rejects']} rejects)")
            continue
        summaries[name] = step()
        log(f"{name}: {summaries[name]['ok']} ok, {summaries[name]['rejects']} rejects {summaries[name]['reasons'] or ''}")
    return summaries


def _reward_stage(config: SynthConfig, out: Path, progress: bool) -> dict:
    from .reward import run_reward

    folder = stage_dir(out, "reward")
    started = time.monotonic()
    records = ok_records(stage_dir(out, "answer"))
    scored = run_reward(records, folder / "batches", config.reward, config.seed, progress) if records else []
    return _with_time(folder, seal(folder, scored, config.executor.tasks), time.monotonic() - started)


def _sft_records(config: SynthConfig, out: Path) -> list[dict]:
    answers = _by_id(ok_records(stage_dir(out, "reward")))
    longforms = _by_id(ok_records(stage_dir(out, "longform")))
    return [sft_record(r, answers.get(str(r["id"])), longforms.get(str(r["id"]))) for r in ok_records(stage_dir(out, "filter"))]


def dpo_records(config: SynthConfig, out: Path) -> list[dict]:
    answers = _by_id(ok_records(stage_dir(out, "reward")))
    longforms = _by_id(ok_records(stage_dir(out, "longform")))
    pairs = (
        dpo_record(r, answers.get(str(r["id"])), longforms.get(str(r["id"])), config.switches.dpo_step_by_step)
        for r in ok_records(stage_dir(out, "filter"))
    )
    return [p for p in pairs if p is not None]
