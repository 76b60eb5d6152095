"""The run: input -> instruction -> scoring -> filter -> answer -> longform -> reward -> sft -> classify.

Model stages are datatrove pipelines (JsonlReader -> InferenceRunner -> JsonlWriter) run by a datatrove
executor (local, Slurm or Ray) with per-record checkpoints; the same config runs anywhere. Each stage
reads the sealed, sorted output of the stages before it and is sealed in turn (see records.py), so a
rerun skips sealed stages and resumes an interrupted one from datatrove's checkpoints.

Layout of the output folder:
    manifest.json                 input hash + output-shaping settings (a changed input refuses to resume)
    run.lock                      while a run works here: its pid, host and start time (see run_lock)
    input/part-*.jsonl            the raw texts, sorted into `executor.tasks` parts
    stages/NN_<stage>/input/      that stage's input parts (model stages)
                     /shards/     datatrove's output shards, /checkpoints/, /logs/
                     /ok/part-*.jsonl, rejects.jsonl, DONE (counts, reasons, tokens, seconds)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import SynthConfig
from .inputs import check_manifest, load_texts, manifest, portable_input
from .records import (
    RecordError,
    is_done,
    mark_done,
    ok_records,
    read_folder,
    seal,
    write_parts,
    write_text,
)
from .stages import MODEL_STAGES, ROLLOUTS, dpo_record, filter_record, sft_record

STAGES = ("instruction", "scoring", "filter", "answer", "longform", "reward", "sft", "classify")


def stage_dir(out: Path, name: str) -> Path:
    return out / "stages" / f"{STAGES.index(name) + 1:02d}_{name}"


def _flatten(writer, document) -> dict:
    return document.metadata["rollout_results"][0]


def _executor(config: SynthConfig, pipeline: list, logging_dir: Path, name: str, root: Path):
    spec = config.executor
    if spec.type == "slurm":
        options = {"time": "24:00:00", "partition": "gpu", "job_name": f"finemed-synth-{name}"} | spec.slurm
        executor = _executor_class("Slurm")(pipeline=pipeline, tasks=spec.tasks, logging_dir=str(logging_dir), **options)
    elif spec.type == "ray":
        executor = _executor_class("Ray")(
            pipeline=pipeline, tasks=spec.tasks, workers=spec.workers, logging_dir=str(logging_dir), **spec.ray
        )
    else:
        kind = "InProcess" if spec.workers == 1 else "Local"
        executor = _executor_class(kind)(pipeline=pipeline, tasks=spec.tasks, workers=spec.workers, logging_dir=str(logging_dir))
    executor.portable_paths = _portable_paths(config, root)
    return executor


def _portable_paths(config: SynthConfig, root: Path) -> list[tuple[str, str]]:
    """Absolute paths of this machine -> what executor.json says instead (longest first)."""
    root = root.resolve()
    pairs = [(str(root) + os.sep, ""), (str(root), "."), (str(Path.home()), "~")]
    if config.input.path:
        pairs.insert(0, (str(Path(config.input.path).resolve()), portable_input(config, root)))
    return pairs


class _PortableJson:
    """datatrove writes its executor (pipeline, folders, our config) to logs/executor.json and names
    files in its task logs; ours say paths relative to the run folder (and ~ for the home folder), so
    a run folder can be shared."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        from loguru import logger

        pairs = getattr(self, "portable_paths", ())

        def portable(record) -> None:
            for absolute, relative in pairs:
                record["message"] = record["message"].replace(absolute, relative)

        logger.configure(patcher=portable)
        try:
            return super()._run_for_rank(rank, local_rank, node_rank)
        finally:
            logger.configure(patcher=lambda record: None)  # (patcher=None would keep ours)

    def save_executor_as_json(self, indent: int = 4) -> None:
        from datatrove.executor.base import ExecutorJSONEncoder

        fields = {k: v for k, v in self.__dict__.items() if k != "portable_paths"} | {"world_size": self.world_size}
        text = json.dumps(fields, cls=ExecutorJSONEncoder, indent=indent)
        for absolute, portable in getattr(self, "portable_paths", ()):
            text = text.replace(json.dumps(absolute)[1:-1], json.dumps(portable)[1:-1])
        with self.logging_dir.open("executor.json", "w") as handle:
            handle.write(text)


class _InProcess:
    """LocalPipelineExecutor for one worker, minus its multiprocess.Manager: that extra process
    outlives a kill -9 of the run (it was found orphaned here) and costs a process per stage."""

    def run(self):
        from copy import deepcopy

        from datatrove.utils.stats import PipelineStats

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


_EXECUTOR_BASES = {
    "InProcess": "LocalPipelineExecutor", "Local": "LocalPipelineExecutor",
    "Slurm": "SlurmPipelineExecutor", "Ray": "RayPipelineExecutor",
}
_EXECUTOR_CLASSES: dict[str, type] = {}


def _executor_class(kind: str) -> type:
    """datatrove's executor `kind` with our executor.json; built on first use (datatrove is imported
    lazily), registered under a module-level name so that Slurm/Ray tasks unpickle it by reference."""
    name = f"Portable{kind}Executor"
    if name not in _EXECUTOR_CLASSES:
        import datatrove.executor

        base = getattr(datatrove.executor, _EXECUTOR_BASES[kind])
        mixins = (_PortableJson, _InProcess) if kind == "InProcess" else (_PortableJson,)
        _EXECUTOR_CLASSES[name] = type(name, (*mixins, base), {"__module__": __name__, "__qualname__": name})
    return _EXECUTOR_CLASSES[name]


def __getattr__(name: str):  # PEP 562: a Slurm task unpickling `PortableSlurmExecutor`
    if name.startswith("Portable") and name.endswith("Executor") and name[8:-8] in _EXECUTOR_BASES:
        return _executor_class(name[8:-8])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- Slurm: the executor returns once the array is submitted; wait for it, bounded -----------------

SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
SLURM_UNKNOWN_LIMIT_S = 600.0  # neither sacct nor squeue knows the job for this long: stop waiting


def slurm_task_states(job_id: str) -> dict[str, str] | None:
    """{array task: state} from sacct (every state), else from squeue (active tasks only: {} once the
    job left the queue); None when neither command answers about the job."""
    try:
        result = subprocess.run(
            ["sacct", "-j", job_id, "--noheader", "--parsable2", "--format=JobID,State"],
            capture_output=True, text=True, timeout=60,
        )
        states = {}
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            task, _, state = line.partition("|")
            if task and "." not in task:  # job steps (123_0.batch) repeat their task's state
                states[task] = state.split()[0] if state.split() else "UNKNOWN"
        if states:
            return states
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        result = subprocess.run(["squeue", "-j", job_id, "-h", "-o", "%i|%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return {} if "invalid job id" in result.stderr.lower() else None
    return {task: state for task, _, state in (line.partition("|") for line in result.stdout.split())}


def wait_for_slurm(job_id: str | int | None, logging_dir: Path, tasks: int, name: str, max_poll_s: float = 30.0) -> None:
    """Until every task wrote its completion file; an error as soon as Slurm says every task ended and
    some did not complete (a task killed, out of memory, cancelled, timed out), or when Slurm has not
    known the job for SLURM_UNKNOWN_LIMIT_S."""
    completions = logging_dir / "completions"
    delay, unknown_since = 1.0, None
    while True:
        states = slurm_task_states(str(job_id)) if job_id not in (None, -1, "-1") else {}
        done = len(list(completions.glob("*"))) if completions.is_dir() else 0  # after the states: no race
        if done >= tasks:
            return
        where = f"stage {name}: Slurm job {job_id}: {done} of {tasks} task(s) completed"
        if states is None:
            unknown_since = unknown_since or time.monotonic()
            if time.monotonic() - unknown_since > SLURM_UNKNOWN_LIMIT_S:
                raise RecordError(f"{where}; neither sacct nor squeue has known the job for {SLURM_UNKNOWN_LIMIT_S:.0f} s; rerun to resume")
        else:
            unknown_since = None
            if not any(state in SLURM_ACTIVE for state in states.values()):
                ended = ", ".join(f"{task} {state}" for task, state in sorted(states.items()) if state != "COMPLETED")
                raise RecordError(
                    f"{where}; the others ended without completing ({ended or 'no longer queued'}; "
                    f"see {logging_dir / 'slurm_logs'}); rerun to resume"
                )
        time.sleep(delay)
        delay = min(2 * delay, max_poll_s)


# --- the run lock ------------------------------------------------------------------------------------

LOCK_NAME = "run.lock"


class OutputInUse(RecordError):
    """Another live run holds the output folder's lock."""


def read_lock(folder: Path) -> dict | None:
    """The lock's holder {pid, host, started, pid_start} (None: no lock file, or not written yet)."""
    try:
        return json.loads((folder / LOCK_NAME).read_text(encoding="utf-8") or "null")
    except (OSError, json.JSONDecodeError):
        return None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell a live holder from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def holder_alive(holder: dict) -> bool | None:
    """True/False for a holder on this host; None for another host (not checkable from here)."""
    if holder.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _process_start(int(holder["pid"]))
    return started is None or holder.get("pid_start") in (None, started)


@contextmanager
def run_lock(folder: Path, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold `folder/run.lock` for the run: a second run on the same folder is refused naming the holder.
    The lock is a kernel flock, so a killed run's lock is free at once (its file is then stale and
    taken over); the file records pid, host and start time for the refusal and for `status`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = json.loads(os.pread(fd, 4096, 0) or b"null") or {}
            os.close(fd)
            raise OutputInUse(
                f"{folder}: another run is using this output folder (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, since {holder.get('started', '?')}); wait for it, stop it, or use another output"
            ) from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break  # else the previous holder removed the file between our open and flock: retry
        except FileNotFoundError:
            pass
        os.close(fd)
    stale = json.loads(os.pread(fd, 4096, 0) or b"null")
    if stale:
        log(f"taking over the lock of a stopped run (pid {stale.get('pid')} on {stale.get('host')}, since {stale.get('started')})")
    holder = {
        "pid": os.getpid(), "host": socket.gethostname(), "pid_start": _process_start(os.getpid()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


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
    return run_model_stage(config, stage_dir(out, name), name, make_input, progress, root=out)


def run_model_stage(
    config: SynthConfig, folder: Path, name: str, make_input: Callable[[], list[dict]], progress: bool, *, root: Path
) -> dict:
    """One datatrove stage in `folder` (inside the output folder `root`): input parts -> rollout
    `name` -> shards -> sealed ok/rejects."""
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
    started, written_before = time.monotonic(), _count_lines(folder / "shards")
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
        executor = _executor(config, [reader, runner], folder / "logs", name, root)
        with _Progress(folder / "shards", len(expected), name, progress):
            executor.run()
            if config.executor.type == "slurm":
                wait_for_slurm(executor.job_id, folder / "logs", config.executor.tasks, name)
        completions = folder / "logs" / "completions"
        if config.executor.type == "local" and len(list(completions.glob("*"))) < config.executor.tasks:
            raise RecordError(f"stage {name}: a datatrove task failed (see {folder / 'logs'}); rerun to resume")
    records = read_folder(folder / "shards", "*.jsonl")
    got = sorted({str(r["id"]) for r in records})
    if got != expected:
        missing = sorted(set(expected) - set(got))[:5]
        raise RecordError(f"stage {name}: {len(set(expected) - set(got))} input record(s) have no output, e.g. {missing}")
    summary = seal(folder, records, config.executor.tasks)
    return _with_time(folder, summary, time.monotonic() - started, timed_records=len(records) - written_before)


def _with_time(folder: Path, summary: dict, seconds: float, timed_records: int | None = None) -> dict:
    """DONE with the seconds this process spent; after a resume, `timed_records` (the records this
    process wrote) keeps the stage's rate honest: the earlier processes' records took earlier time."""
    summary = summary | {"seconds": round(seconds, 3)}
    if timed_records is not None:
        summary["timed_records"] = timed_records
    mark_done(folder, summary)
    return summary


def _pure_stage(config: SynthConfig, out: Path, name: str, make: Callable[[], list[dict]]) -> dict:
    folder = stage_dir(out, name)
    started = time.monotonic()
    return _with_time(folder, seal(folder, make(), config.executor.tasks), time.monotonic() - started)


def _by_id(records: list[dict]) -> dict[str, dict]:
    return {str(r["id"]): r for r in records}


def run(config: SynthConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every stage under the output folder's run lock; return {stage: summary}."""
    out = Path(config.output)
    texts = load_texts(config)  # validates every row before any model call
    current = manifest(config, texts, out)
    check_manifest(out / "manifest.json", current)  # before the lock: a refused resume creates nothing
    with run_lock(out, log):
        return _run_locked(config, out, texts, current, progress, log)


def _run_locked(config: SynthConfig, out: Path, texts: list[dict], current: dict, progress: bool, log: Callable[[str], None]) -> dict:
    check_manifest(out / "manifest.json", current)  # again: another run may have started this folder meanwhile
    if not (out / "manifest.json").is_file():
        write_text(out / "manifest.json", json.dumps(current, indent=2, sort_keys=True))
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
