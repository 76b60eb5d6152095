"""Operating a synthesis run: the output folder's run lock (real processes, real kill -9), `status`
telling a running run from a killed one, record rates of slow stages, run folders without machine
paths and with the umask's permissions, a bounded Slurm wait (fake sbatch/sacct on PATH: Slurm cannot
run here), `limit` on an endless input, and `analyze`'s errors and its all-truncated judge figure.

The pipeline runs against the real HTTP replay server on 127.0.0.1 (recorded outputs of
tests/fixtures/synth), as in test_synth_run.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from finemed_eval.cli import main
from finemed_eval.synth.config import load_config
from finemed_eval.synth.replay import ReplayServer, load_recorded

FIXTURES = Path(__file__).parent / "fixtures" / "synth"
TEXTS = FIXTURES / "raw_texts.jsonl"
ROLES = ("instruction", "scoring", "answer", "longform", "classifier")
UMASK = 0o027  # not the usual 022: files must come out 0640, folders 0750


def config_dict(url: str, output: str, texts: str, **extra) -> dict:
    return {
        "output": output,
        "input": {"path": texts, "id_field": "id"},
        **{role: {"backend": "endpoint", "endpoint_url": url, "model": "replay", "max_tokens": 64} for role in ROLES},
        "retry": {"attempts": 2, "backoff_s": 0.01},
        "reward": {"model": "embedded", "seeded_head": True, "batch_size": 4, "max_length": 256},
        **extra,
    }


def cli_status(out: Path) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["synth", "status", str(out)]) == 0
    return buffer.getvalue()


@pytest.fixture(scope="module")
def replay():
    with ReplayServer(load_recorded(FIXTURES / "recorded_outputs.json")) as server:
        yield server


@pytest.fixture(scope="module")
def lifecycle(replay, tmp_path_factory):
    """One output folder through a run's life, in real `finemed synth run` processes started in a
    work folder W (input W/texts.jsonl, output W/out given as an absolute path) under umask 027:
    run A holds the lock on a slow server; run B on the same folder is refused; A is killed with
    SIGKILL; run C takes the stale lock over and finishes; the folder is moved and resumes (D)."""
    work = tmp_path_factory.mktemp("ops")
    shutil.copy(TEXTS, work / "texts.jsonl")
    out = work / "out"
    data = config_dict(replay.url, str(out), "texts.jsonl")
    data["instruction"]["max_concurrent"] = 1  # with the slow server: A stays in its first stage
    (work / "synth.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    os.mkdir(out, 0o750)
    os.mkdir(out / ".manifest.json.tmp", 0o750)  # what the old fixed temp name collided with
    command = [sys.executable, "-m", "finemed_eval.cli", "synth", "run", "synth.yaml", "--no-progress"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}

    def start(argv=command, **kwargs):
        return subprocess.Popen(argv, cwd=work, env=env, preexec_fn=lambda: os.umask(UMASK), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)

    seen: dict = {}
    replay.delay_s = 2.0
    try:
        a = start()
        deadline = time.monotonic() + 180
        while (json.loads((out / "run.lock").read_text() or "null") if (out / "run.lock").is_file() else None) is None:
            assert a.poll() is None, f"run A ended early: {a.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "run A never took the lock"
            time.sleep(0.2)
        while not (out / "stages" / "01_instruction" / "input" / "DONE").is_file():  # A is in its first stage
            assert a.poll() is None and time.monotonic() < deadline, "run A never started its first stage"
            time.sleep(0.2)
        seen["a_pid"] = a.pid
        b = start()
        _, seen["b_err"] = b.communicate(timeout=180)
        seen["b_rc"] = b.returncode
        seen["status_running"] = cli_status(out)
        os.kill(a.pid, signal.SIGKILL)
        a.communicate()
        seen["status_killed"] = cli_status(out)
    finally:
        replay.delay_s = 0.0
    c = start()
    seen["c_out"], seen["c_err"] = c.communicate(timeout=600)
    seen["c_rc"] = c.returncode
    seen["status_finished"] = cli_status(out)
    seen["files"] = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    seen["modes"] = {str(p): (stat.S_IMODE(p.stat().st_mode), p.is_dir()) for p in [out, *out.rglob("*")]}
    moved = work / "moved" / "out"
    moved.parent.mkdir()
    out.rename(moved)
    d = start([*command, "--output", str(moved)])
    _, seen["d_err"] = d.communicate(timeout=300)
    seen["d_rc"] = d.returncode
    return work, out, seen


def test_second_run_on_the_same_output_is_refused_naming_the_holder(lifecycle):
    _, out, seen = lifecycle
    assert seen["b_rc"] == 2
    lines = seen["b_err"].strip().splitlines()
    assert len(lines) == 1, seen["b_err"]
    assert f"pid {seen['a_pid']}" in lines[0] and str(out) in lines[0] and "another run is using this output folder" in lines[0]


def test_status_tells_a_running_run_from_a_killed_one(lifecycle):
    _, _, seen = lifecycle
    assert seen["status_running"].startswith(f"run: running (pid {seen['a_pid']} on "), seen["status_running"]
    assert seen["status_killed"].startswith(f"run: stopped (killed?) (pid {seen['a_pid']} on "), seen["status_killed"]
    instruction = next(line for line in seen["status_killed"].splitlines() if line.startswith("instruction"))
    assert instruction.split()[1] == "stopped" and "running" not in seen["status_killed"]
    assert seen["status_finished"].splitlines()[0] == "run: finished"


def test_a_killed_runs_lock_is_taken_over_and_the_run_completes(lifecycle):
    _, out, seen = lifecycle
    assert seen["c_rc"] == 0, seen["c_err"][-2000:]
    assert f"taking over the lock of a stopped run (pid {seen['a_pid']} on " in seen["c_err"]
    assert not any(p.name == "run.lock" for p in seen["files"]), "a finished run releases its lock"
    summary = json.loads(seen["c_out"])
    assert summary["instruction"]["ok"] + summary["instruction"]["rejects"] == 12


def test_the_manifest_is_written_through_a_unique_temp_file(lifecycle):
    _, out, seen = lifecycle
    manifest = json.loads(seen["files"][out / "manifest.json"])
    assert manifest["records"] == 12
    assert not [p for p in seen["files"] if p.name.endswith(".tmp")], "no temp file is left behind"


def test_run_folder_names_no_machine_path_and_moves(lifecycle):
    """Every artefact (manifest, stage records, datatrove's executor.json and logs, DONE files): no
    home folder, no ~/.cache, no working directory; the input is named relative to the run folder."""
    work, out, seen = lifecycle
    needles = {str(work), str(Path.home()), os.path.expanduser("~/.cache"), os.getcwd()}
    leaks = {str(p.relative_to(out)): n for p, data in seen["files"].items() for n in needles if n.encode() in data}
    assert not leaks, leaks
    assert len(seen["files"]) > 40  # manifests, parts, shards, logs, executor.json of every stage
    assert json.loads(seen["files"][out / "manifest.json"])["input"] == "../texts.jsonl"
    assert seen["d_rc"] == 0, seen["d_err"][-2000:]
    assert "instruction: done earlier" in seen["d_err"], "a moved run folder resumes (the input's content decides)"


def test_every_file_follows_the_umask(lifecycle):
    _, _, seen = lifecycle
    wrong = {p: oct(mode) for p, (mode, folder) in seen["modes"].items() if mode != (0o750 if folder else 0o640)}
    assert not wrong, wrong


# --- status: rates ---------------------------------------------------------------------------------


def test_status_shows_a_slow_stage_rate_in_sensible_units(tmp_path):
    from finemed_eval.synth.pipeline import stage_dir
    from finemed_eval.synth.records import mark_done
    from finemed_eval.synth.status import format_rate, format_status, stage_status

    # 12 records in 50 minutes: 0.004 rec/s, which "rec/s 0.00" hid
    mark_done(stage_dir(tmp_path, "instruction"), {"ok": 10, "rejects": 2, "reasons": {"no_json": 2},
                                                   "tokens": {"prompt": 1, "completion": 1}, "seconds": 3000.0})
    rows = stage_status(tmp_path)
    assert rows[0]["records_per_s"] == pytest.approx(0.004)
    assert "14.4 rec/h" in format_status(rows)
    assert [format_rate(x) for x in (25.0, 0.5, 1 / 7200, 1e-6)] == ["25 rec/s", "30 rec/min", "0.5 rec/h", "0.0036 rec/h"]
    # resumed: the sealing process wrote 3 of the 12 records in its 6 s; the other 9 took earlier time
    mark_done(stage_dir(tmp_path, "scoring"), {"ok": 12, "rejects": 0, "reasons": {}, "tokens": {"prompt": 1, "completion": 1},
                                               "seconds": 6.0, "timed_records": 3})
    assert stage_status(tmp_path)[1]["records_per_s"] == 0.5


# --- Slurm: fake sbatch / sacct on PATH (Slurm cannot run on this machine) --------------------------

FAKE_SBATCH = """#!{python}
# Runs each array task of the submitted script as a local process; tasks listed in FAKE_SLURM_DIE
# die at once (exit 137, as a task killed for memory). Non-array jobs (datatrove's stats merge) only
# get an id.
import os, re, subprocess, sys
from pathlib import Path
state = Path(os.environ["FAKE_SLURM_STATE"])
state.mkdir(exist_ok=True)
script = Path(sys.argv[-1]).read_text()
job = str(100 + len(list(state.iterdir())))
folder = state / job
folder.mkdir()
(folder / "script.sh").write_text(script)
array = re.search(r"#SBATCH --array=(\\d+)-(\\d+)", script)
dying = os.environ.get("FAKE_SLURM_DIE", "").split(",")
for task in range(int(array[1]), int(array[2]) + 1) if array else []:
    body = "(exit 137)" if str(task) in dying else f"bash {{folder / 'script.sh'}}"
    done = f"echo $? > {{folder}}/{{task}}.tmp && mv {{folder}}/{{task}}.tmp {{folder}}/{{task}}.exit"
    env = os.environ | {{"SLURM_ARRAY_TASK_ID": str(task), "SLURM_JOB_ID": job, "SLURM_ARRAY_JOB_ID": job,
                         "SLURM_NODELIST": "localhost", "RUN_OFFSET": "0"}}
    (folder / f"{{task}}.task").touch()
    with open(folder / f"{{task}}.log", "w") as log:
        subprocess.Popen(["bash", "-c", f"{{body}}; {{done}}"], env=env, stdout=log, stderr=log, start_new_session=True)
print(f"Submitted batch job {{job}}")
"""

FAKE_SACCT = """#!{python}
# sacct -j JOB --noheader --parsable2 --format=JobID,State for the fake sbatch's jobs
import os, sys
from pathlib import Path
job = sys.argv[sys.argv.index("-j") + 1]
folder = Path(os.environ["FAKE_SLURM_STATE"]) / job
for task in sorted(folder.glob("*.task")):
    code = folder / f"{{task.stem}}.exit"
    state = "RUNNING" if not code.is_file() else ("COMPLETED" if code.read_text().strip() == "0" else "FAILED")
    print(f"{{job}}_{{task.stem}}|{{state}}")
    print(f"{{job}}_{{task.stem}}.batch|{{state}}")
"""


FAKE_SCONTROL = """#!{python}
# scontrol show hostnames NODELIST: one node here
import sys
print(sys.argv[-1])
"""


@pytest.fixture()
def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_STATE", str(tmp_path / "slurm"))
    return tmp_path / "slurm"


def slurm_stage(replay, tmp_path: Path):
    """The instruction stage, run by datatrove's Slurm executor (2 array tasks), in a thread."""
    from finemed_eval.synth.inputs import load_texts
    from finemed_eval.synth.pipeline import run_model_stage

    data = config_dict(replay.url, str(tmp_path / "out"), str(TEXTS),
                       executor={"type": "slurm", "tasks": 2, "slurm": {"with_srun": False, "partition": "test"}})
    (tmp_path / "synth.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(tmp_path / "synth.yaml")
    texts = load_texts(config)
    result: dict = {}

    def target():
        try:
            result["summary"] = run_model_stage(config, tmp_path / "out" / "stage", "instruction", lambda: texts, False,
                                                root=tmp_path / "out")
        except Exception as error:  # noqa: BLE001 - handed to the test
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout=150)
    return result, thread.is_alive(), time.monotonic() - started


def test_slurm_wait_ends_with_an_error_when_a_task_dies(replay, fake_slurm, tmp_path, monkeypatch):
    from finemed_eval.synth.records import RecordError

    monkeypatch.setenv("FAKE_SLURM_DIE", "1")
    result, hung, seconds = slurm_stage(replay, tmp_path)
    assert not hung, "the wait must not poll forever once a task is dead"
    error = result.get("error")
    assert isinstance(error, RecordError), result
    assert "Slurm job 100" in str(error) and "100_1 FAILED" in str(error) and "rerun to resume" in str(error)
    assert seconds < 120


def test_slurm_stage_completes_through_sbatch(replay, fake_slurm, tmp_path):
    result, hung, _ = slurm_stage(replay, tmp_path)
    assert not hung and "error" not in result, result
    assert result["summary"]["ok"] + result["summary"]["rejects"] == 12
    executor_json = (tmp_path / "out" / "stage" / "logs" / "executor.json").read_text()
    assert str(tmp_path) not in executor_json and "PortableSlurmExecutor" not in executor_json


def test_slurm_wait_is_bounded_when_slurm_forgets_the_job(fake_slurm, tmp_path, monkeypatch):
    """sacct has no record of the job and there is no squeue: give up after the bound; a squeue that
    no longer knows the job (its tasks ended) while completions are missing: an error at once."""
    from finemed_eval.synth import pipeline
    from finemed_eval.synth.records import RecordError

    monkeypatch.setattr(pipeline, "SLURM_UNKNOWN_LIMIT_S", 2.0)
    started = time.monotonic()
    with pytest.raises(RecordError, match="Slurm job 999: 0 of 1 task.*neither sacct nor squeue has known the job"):
        pipeline.wait_for_slurm("999", tmp_path / "logs", 1, "instruction")
    assert time.monotonic() - started < 30
    squeue = Path(os.environ["PATH"].split(os.pathsep)[0]) / "squeue"
    squeue.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('slurm_load_jobs error: Invalid job id specified')\nsys.exit(1)\n")
    squeue.chmod(0o755)
    with pytest.raises(RecordError, match="ended without completing \\(no longer queued"):
        pipeline.wait_for_slurm("999", tmp_path / "logs", 1, "instruction")


# --- input: limit streams ------------------------------------------------------------------------


def test_limit_stops_reading_an_endless_input(tmp_path):
    """A FIFO fed by a writer that never ends on its own: limit 3 returns at once, and the reader
    closing early is what stops the writer (the old reader read everything before applying limit)."""
    from finemed_eval.synth.inputs import load_texts

    fifo = tmp_path / "endless.jsonl"
    os.mkfifo(fifo)
    writer: dict = {"lines": 0, "closed_by_reader": False}

    def write():
        started = time.monotonic()
        with open(fifo, "w", encoding="utf-8") as handle:
            try:
                while time.monotonic() - started < 30:
                    for _ in range(100):
                        writer["lines"] += 1
                        handle.write(json.dumps({"id": f"t{writer['lines']}", "text": "Anaemia is common."}) + "\n")
                    handle.flush()
                    time.sleep(0.01)
            except BrokenPipeError:
                writer["closed_by_reader"] = True

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    data = {"output": str(tmp_path / "out"), "input": {"path": str(fifo), "id_field": "id", "limit": 3}}
    (tmp_path / "synth.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    started = time.monotonic()
    texts = load_texts(load_config(tmp_path / "synth.yaml"))
    elapsed = time.monotonic() - started
    thread.join(timeout=35)
    assert [t["id"] for t in texts] == ["t1", "t2", "t3"]
    assert elapsed < 10, f"limit 3 took {elapsed:.1f} s: the input was read to its end"
    assert writer["closed_by_reader"], "the reader stopped reading the stream"


def test_limit_reads_csv_and_parquet_rows_in_order(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from finemed_eval.synth.inputs import load_texts

    rows = [{"id": f"r{i}", "text": f"Text {i}."} for i in range(5000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "texts.parquet", row_group_size=1000)
    (tmp_path / "texts.csv").write_text("id,text\n" + "".join(f"{r['id']},{r['text']}\n" for r in rows), encoding="utf-8")
    for name in ("texts.parquet", "texts.csv"):
        data = {"input": {"path": str(tmp_path / name), "id_field": "id", "limit": 3}}
        (tmp_path / "synth.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        assert load_texts(load_config(tmp_path / "synth.yaml")) == rows[:3]


# --- analyze -------------------------------------------------------------------------------------


class TruncatingReplay(ReplayServer):
    """Every answer cut short by the token limit (finish_reason "length"), as a judge with too small a
    max_tokens produces."""

    def answer(self, request: dict) -> dict:
        reply = super().answer(request)
        choice = reply["choices"][0]
        choice["finish_reason"], choice["message"]["content"] = "length", choice["message"]["content"][:12]
        return reply


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_analyze_without_anything_to_analyze_is_an_error(replay, tmp_path):
    config = tmp_path / "synth.yaml"
    config.write_text(yaml.safe_dump(config_dict(replay.url, str(tmp_path / "out"), str(TEXTS))), encoding="utf-8")
    code, _, err = run_cli(["synth", "analyze", str(config), "--to", str(tmp_path / "figures")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nothing to analyze" in err, err
    assert not (tmp_path / "figures").exists()


def test_analyze_names_a_missing_local_file_instead_of_asking_the_hub(replay, tmp_path):
    config = tmp_path / "synth.yaml"
    config.write_text(yaml.safe_dump(config_dict(replay.url, str(tmp_path / "out"), str(TEXTS))), encoding="utf-8")
    for source in (str(tmp_path / "missing.jsonl"), "data/missing.jsonl", "./sft", "org/name/extra"):
        code, _, err = run_cli(["synth", "analyze", str(config), "--dataset", f"Mine={source}", "--to", str(tmp_path / "f")])
        assert code == 2 and f"--dataset Mine={source}: no such file (and not a hub dataset id)" in err, err
    assert not (tmp_path / "f").exists(), "checked before any work"


def test_analyze_says_when_every_judge_call_was_truncated(tmp_path):
    from finemed_eval.synth.analyze import figure3
    from finemed_eval.synth.records import read_jsonl

    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"instruction": f"What causes symptom {i}?"}) + "\n" for i in range(4)))
    with TruncatingReplay(load_recorded(FIXTURES / "recorded_outputs.json")) as server:
        config = tmp_path / "synth.yaml"
        config.write_text(yaml.safe_dump(config_dict(server.url, str(tmp_path / "out"), str(TEXTS))), encoding="utf-8")
        code, out, err = run_cli(["synth", "analyze", str(config), "--dataset", f"Other={other}", "--sample", "4",
                                  "--to", str(tmp_path / "figures")])
    assert code == 0, err
    assert "figure 3, Other: no scores: 4 of 4 judge calls rejected (truncated: 4)" in err
    assert json.loads((tmp_path / "figures" / "judge_scores.json").read_text()) == {"Other": []}
    png = tmp_path / "figures" / "figure3_quality_complexity.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (done,) = (tmp_path / "figures" / "judge").glob("*/DONE")
    fig = figure3({"Other": []}, {"Other": next(read_jsonl(done))})
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts and all("no scores" in t and "truncated: 4" in t for t in texts), texts
