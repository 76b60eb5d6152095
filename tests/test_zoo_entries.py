"""The curated zoo file against its schema and the paper's tables; trained-model registration: one
file per model, written atomically, readable by name everywhere a model is accepted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest

from finemed_eval import zoo
from finemed_eval.zoo.curated import CURATED, ENTRY_SCHEMA

PAPER_TABLES = Path(__file__).parents[2] / "shared" / "paper_tables.md"


def test_curated_entries_follow_the_schema_and_have_unique_names():
    for entry in CURATED:
        jsonschema.validate(entry, ENTRY_SCHEMA)
    names = [e["name"] for e in CURATED]
    assert len(names) == len(set(names))
    assert all(zoo.ZooEntry.from_dict(e, "test").to_dict() == e for e in CURATED)


def _paper_rows(table: str) -> list[str]:
    text = PAPER_TABLES.read_text() if PAPER_TABLES.is_file() else ""
    if not text:  # the copy next to the repository is optional; the rows as printed in the paper
        return {
            "Table 1": ["Baichuan2-7B", "ChatGLM3-6B", "InternLM2.5-7B", "HuatuoGPT2-7B", "Medical-Llama3-8B",
                        "Llama3.1-8B", "FineMedLM", "FineMedLM-o1"],
            "Table 2": ["FineMedLM", "HuatuoGPT-o1", "FineMedLM-o1", "GPT-4o-mini", "QwQ-32B-Preview", "GPT-4o",
                        "DeepSeek-v3"],
        }[table]  # fmt: skip
    section = text.split(f"## {table}")[1].split("\n## ")[0]
    rows = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    return [re.sub(r"\s*\(.*\)$", "", r) for r in rows[1:]]  # drop the header and "(medical)"/"(TTT)" notes


@pytest.mark.parametrize("table", ["Table 1", "Table 2"])
def test_every_model_of_the_papers_tables_has_an_entry(table):
    by_paper_name = {e.paper_name: e for e in zoo.ZOO.values() if e.paper_name}
    for row in _paper_rows(table):
        assert row in by_paper_name, f"{table} row {row!r} has no zoo entry"
        assert table in by_paper_name[row].paper_tables


def test_api_only_models_are_named_but_not_loadable():
    assert zoo.ZOO["gpt-4o"].api_only
    with pytest.raises(zoo.ZooError, match="API model without open weights"):
        zoo.resolve_pretrained("gpt-4o")


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_registration_writes_one_file_per_model_and_resolves_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("FINEMED_ZOO_DIR", str(tmp_path / "zoo"))
    ckpt = _checkpoint(tmp_path / "ckpt")
    path = zoo.register("my-model", ckpt, "a test model", parent="smollm2-135m-instruct", lineage=["smollm2-135m-instruct"])
    assert path == tmp_path / "zoo" / "my-model.json"
    assert json.loads(path.read_text()) == {
        "name": "my-model",
        "source": str(ckpt.resolve()),
        "description": "a test model",
        "parent": "smollm2-135m-instruct",
        "lineage": ["smollm2-135m-instruct"],
    }
    assert zoo.resolve_pretrained("my-model") == str(ckpt.resolve())
    assert zoo.canonical_model("my-model") == str(ckpt.resolve())
    assert zoo.lineage_of("my-model") == ("my-model", "smollm2-135m-instruct")
    assert "my-model" in [e.name for e in zoo.list_zoo()]
    assert not zoo.is_embedded("my-model")
    with pytest.raises(zoo.ZooError, match="Did you mean 'my-model'"):
        zoo.resolve_pretrained("my-modle")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_registration_file_mode_follows_the_umask(tmp_path, monkeypatch, umask, mode):
    """Readable by the others of a shared zoo when the umask says so, private when it says that."""
    monkeypatch.setenv("FINEMED_ZOO_DIR", str(tmp_path / "zoo"))
    ckpt = _checkpoint(tmp_path / "ckpt")
    previous = os.umask(umask)
    try:
        path = zoo.register("my-model", ckpt, "a test model")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode
    assert [p.name for p in path.parent.iterdir()] == ["my-model.json"]  # no temp file left behind


def test_registration_refuses_curated_names_hub_like_names_and_non_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("FINEMED_ZOO_DIR", str(tmp_path / "zoo"))
    ckpt = _checkpoint(tmp_path / "ckpt")
    with pytest.raises(zoo.ZooError, match="curated"):
        zoo.register("finemedlm-o1", ckpt, "x")
    with pytest.raises(zoo.ZooError, match="must match"):
        zoo.register("org/name", ckpt, "x")
    with pytest.raises(zoo.ZooError, match="no config.json"):
        zoo.register("empty", tmp_path, "x")


def test_a_registered_checkpoint_that_was_deleted_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FINEMED_ZOO_DIR", str(tmp_path / "zoo"))
    ckpt = _checkpoint(tmp_path / "ckpt")
    zoo.register("gone", ckpt, "x")
    (ckpt / "config.json").unlink()
    ckpt.rmdir()
    with pytest.raises(zoo.ZooError, match="is gone"):
        zoo.resolve_pretrained("gone")


def test_concurrent_registrations_never_leave_partial_files(tmp_path, monkeypatch):
    monkeypatch.setenv("FINEMED_ZOO_DIR", str(tmp_path / "zoo"))
    ckpts = [_checkpoint(tmp_path / f"c{i}") for i in range(8)]
    errors: list[BaseException] = []
    seen: list[int] = []

    def writer(i: int) -> None:
        try:
            for _ in range(20):
                zoo.register(f"m{i}", ckpts[i], "x" * 2000)  # same name rewritten, other names alongside
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    def reader() -> None:
        try:
            for _ in range(50):
                seen.append(len(zoo.registered()))  # every file it sees parses (no half-written JSON)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == sorted(f"m{i}.json" for i in range(8))


def test_register_from_provenance_and_the_zoo_commands(tmp_path):
    ckpt = _checkpoint(tmp_path / "ckpt")
    (ckpt / "provenance.json").write_text(
        json.dumps({"register_as": "from-provenance", "parent": "finemedlm", "lineage": ["finemedlm"], "description": "d"})
    )
    env = {"FINEMED_ZOO_DIR": str(tmp_path / "zoo")}

    def finemed(*args: str) -> subprocess.CompletedProcess:
        import os

        return subprocess.run([sys.executable, "-m", "finemed_eval.cli", "zoo", *args], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=120)  # fmt: skip

    done = finemed("register", str(ckpt))
    assert done.returncode == 0 and done.stdout.strip().endswith("from-provenance.json")
    assert finemed("path", "from-provenance").stdout.strip() == str(ckpt.resolve())
    shown = json.loads(finemed("show", "from-provenance").stdout)
    assert shown["parent"] == "finemedlm" and shown["registry_file"].endswith("from-provenance.json")
    assert finemed("path", "finemedlm-o1").stdout.strip() == "hongzhouyu/FineMedLM-o1"
    listing = finemed("list").stdout
    assert "from-provenance" in listing and "finemedlm-o1" in listing
    bad = finemed("show", "finemedlm-01")
    assert bad.returncode == 2 and "Did you mean 'finemedlm-o1'" in bad.stderr and "Traceback" not in bad.stderr
    renamed = finemed("register", str(ckpt), "--name", "renamed")
    assert renamed.returncode == 0 and (tmp_path / "zoo" / "renamed.json").is_file()


def test_the_zoo_imports_nothing_from_the_evaluator_or_training():
    code = (
        "import sys, finemed_eval.zoo as z; z.list_zoo(); z.canonical_model('finemedlm');"
        "bad = [m for m in sys.modules if m.startswith(('finemed_eval.ttt', 'finemed_eval.leaderboard', "
        "'finemed_eval.task', 'finemed_eval.training', 'lm_eval', 'torch', 'transformers'))]; print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"FINEMED_EVAL_NO_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.stdout.strip() == "[]", done.stderr


def test_training_imports_nothing_from_the_evaluator():
    code = (
        "import sys; import finemed_eval.training.sft, finemed_eval.training.dpo, finemed_eval.training.launch;"
        "bad = [m for m in sys.modules if m.startswith(('finemed_eval.ttt', 'finemed_eval.leaderboard', "
        "'finemed_eval.task', 'lm_eval'))]; print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"FINEMED_EVAL_NO_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.stdout.strip() == "[]", done.stderr


def test_every_entry_names_a_known_protocol_and_o1_models_default_to_the_authors():
    from finemed_eval.protocols import PROTOCOLS
    from finemed_eval.zoo import ZOO

    assert all(entry.protocol in PROTOCOLS for entry in ZOO.values())
    assert ZOO["finemedlm-o1"].protocol == "o1" and ZOO["finemedlm"].protocol == "default"
