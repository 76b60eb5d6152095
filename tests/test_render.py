"""The leaderboard renderer: view model, markdown, Jinja2 HTML, plots, then the real page in headless Chromium."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from finemed_eval.leaderboard import view as V
from finemed_eval.leaderboard.markdown import markdown_table
from finemed_eval.leaderboard.page import ACCURACY_PLOT, GOLD_LL_PLOT, html_page
from finemed_eval.leaderboard.render import render

FIXTURE = Path(__file__).parent / "fixtures" / "leaderboard_small.json"
CHROMIUM = Path("/usr/bin/chromium")
EVIL = "tiny <script>alert(1)</script>"
OFF, FULL, PAPER = "smollm2-135m ttt=off", "smollm2-135m ttt=full", "FineMedLM-o1 (TTT)"


@pytest.fixture()
def board() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _board_with(entries: list[dict], keep_pairs: bool = False, **config) -> dict:
    b = json.loads(FIXTURE.read_text(encoding="utf-8"))
    b["entries"] = entries
    b["pairs"] = b["pairs"] if keep_pairs else []
    b["config"].update(config)
    return b


# --------------------------------------------------------------------------- pure functions


def test_markdown_rows_and_averages_exact(board):
    lines = markdown_table(V.build_view(board)).splitlines()
    assert lines[:6] == [
        "| Model | Average | MedQA | MedMCQA | PubMedQA | MMLU-Pro Biology |",
        "|---|---:|---:|---:|---:|---:|",
        "| smollm2-135m ttt=off | 36.56 | 29.67 ± 1.53 | 27.50 ± 2.50 | 52.50 ± 2.50 | — |",
        "| smollm2-135m ttt=full | 40.00 | 32.50 ± 2.50 | 30.00 ± 2.50 | 57.50 ± 2.50 | — |",
        # single seed: std is null so no "±"; only 2 of the 3 measured benchmarks, flagged
        "| tiny &lt;script&gt;alert(1)&lt;/script&gt; | 41.00 (2/3) | 35.00 | — | 47.00 | — |",
        # reported rows last, italic + tag, averaged only over paper numbers
        "| *FineMedLM-o1 (TTT)* (paper) | *70.27* | *60.00* | — | — | *80.54* |",
    ]
    footnote = "\n".join(lines[6:])
    for needle in ("n = 40 examples per seed", "seeds: 0, 1, 2", "few-shot: 3", "limit: 40",
                   "lm-eval 0.4.13", "git revision: abc123", "generated: 2026-11-22T03:00:00Z"):
        assert needle in footnote


def test_reported_rows_never_averaged_with_measured(board):
    # the same model both measured here and reported by the paper -> two rows, two separate averages
    measured = copy.deepcopy(board["entries"][0])
    measured.update(model=PAPER, model_args={"pretrained": "hf/FineMedLM-o1"}, mean=0.40, std=None,
                    seeds=[{"seed": 0, "value": 0.40}])
    board["entries"].append(measured)
    rows = {(r.model, r.status): r for r in V.rows(board)}
    assert rows[(PAPER, "measured")].average == pytest.approx(0.40)
    assert rows[(PAPER, "reported")].average == pytest.approx((0.60 + 0.8054) / 2)
    md = markdown_table(V.build_view(board)).splitlines()
    assert "| FineMedLM-o1 (TTT) | 40.00 (1/3) | 40.00 | — | — | — |" in md
    assert "| *FineMedLM-o1 (TTT)* (paper) | *70.27* | *60.00* | — | — | *80.54* |" in md
    # measured rows all come before reported ones
    statuses = [r.status for r in V.rows(board)]
    assert statuses == sorted(statuses, key=lambda s: s != "measured")


def test_html_escapes_model_names(board):
    page = html_page(V.build_view(board), {})
    assert "<script>alert" not in page
    assert "tiny &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own sorting script
    cells = _parse_table(page)
    assert [r["model"] for r in cells] == [OFF, FULL, EVIL, PAPER]


def test_html_table_cells_and_reported_section(board):
    page = html_page(V.build_view(board), {})
    rows = {(r["model"], r["status"]): r for r in _parse_table(page)}
    off = rows[(OFF, "measured")]
    assert off["cells"]["finemed_medqa"] == ("0.2967", "29.67 ± 1.53")
    assert off["cells"]["finemed_mmlu_pro_biology"] == ("", "—")
    assert float(off["cells"]["average"][0]) == pytest.approx((0.2967 + 0.275 + 0.525) / 3)
    paper = rows[(PAPER, "reported")]
    assert paper["class"] == "reported" and "paper" in paper["cells"]["model"][1]
    assert 'title="average over: MedQA, MMLU-Pro Biology"' in page
    assert 'id="reported"' in page and "FineMedLM-o1 paper, Table 2" in page
    assert 'id="gold_ll_change-absent"' in page and 'id="accuracy_by_benchmark-absent"' in page  # no plots passed in


def test_fixture_matches_runner_schema(board):
    # the renderer's fixture must stay a board the runner could actually write
    schema_path = Path(V.__file__).with_name("schema.json")
    import jsonschema

    jsonschema.Draft202012Validator(json.loads(schema_path.read_text())).validate(board)


def test_footnote_lists_mixed_revisions(board):
    board["entries"][0]["git_revision"] = "old999"
    assert any(line == "measured cells come from git revisions: abc123, old999" for line in V.run_details(board))
    assert not any("lm-eval versions" in line for line in V.run_details(board))


def test_metric_shown_in_header_when_not_acc(board):
    for e in board["entries"]:
        if e["benchmark"] == "MedMCQA":
            e["metric"] = "acc_norm"
    assert "| MedMCQA (acc_norm) |" in markdown_table(V.build_view(board)).splitlines()[0] + "|"
    assert 'data-key="finemed_medmcqa:acc_norm"' in html_page(V.build_view(board), {})


def test_pairs_come_from_the_board_not_from_model_args(board):
    # the renderer shows exactly the pairs the runner wrote, whatever the model args say
    [c] = V.build_view(board).comparisons
    assert (c.baseline, c.treatment, c.benchmark) == (OFF, FULL, "MedQA")
    assert [s["seed"] for s in c.seeds] == [0, 1, 2] and c.pooled["n"] == 120
    board["pairs"] = []
    assert V.build_view(board).comparisons == []


def test_paired_line_in_markdown_and_html(board):
    line = (
        "smollm2-135m ttt=full vs smollm2-135m ttt=off on MedQA (pooled over 3 seeds): accuracy +3.33 pp "
        "(95% CI -2.50 to +9.17), flips 9 wrong→right / 5 right→wrong, exact McNemar p = 0.424, n = 120, "
        "mean change of gold log-likelihood +0.0153"
    )
    view = V.build_view(board)
    assert view.comparisons[0].line() == line
    md = markdown_table(view).splitlines()
    assert f"- **smollm2-135m ttt=full vs smollm2-135m ttt=off** on MedQA (pooled over 3 seeds): {line.split(': ', 1)[1]}" in md
    assert "| smollm2-135m ttt=full vs smollm2-135m ttt=off | MedQA | pooled | +3.33 | -2.50 to +9.17 | 9 | 5 | 0.424 | +0.0153 |" in md
    assert "| smollm2-135m ttt=full vs smollm2-135m ttt=off | MedQA | 2 | +5.00 | -5.00 to +15.00 | 3 | 1 | 0.625 | +0.0220 |" in md
    assert line in html_page(view, {})


def test_render_single_model_single_seed_no_reported(board, tmp_path):
    one = [e for e in board["entries"] if e["model"] == EVIL]
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(_board_with(one, seeds=[0])), encoding="utf-8")
    paths = render(src)
    assert set(paths) == {"html", "markdown", ACCURACY_PLOT}
    assert paths[ACCURACY_PLOT] == tmp_path / "plots" / "accuracy_by_benchmark.png"
    assert not (tmp_path / "plots" / "gold_ll_change.png").exists()
    md = paths["markdown"].read_text(encoding="utf-8").splitlines()
    assert md[2] == "| tiny &lt;script&gt;alert(1)&lt;/script&gt; | 41.00 | 35.00 | 47.00 |"
    page = paths["html"].read_text(encoding="utf-8")
    assert 'id="no-pairs"' in page and 'id="gold_ll_change-absent"' in page
    assert "no numbers reported by the paper" in page


def test_render_full_fixture_writes_everything(tmp_path):
    paths = render(FIXTURE, tmp_path / "out")
    assert set(paths) == {"html", "markdown", ACCURACY_PLOT, GOLD_LL_PLOT}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 500
    page = paths["html"].read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 2  # self-contained: plots inlined
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    linked = html_page(V.build_view(json.loads(FIXTURE.read_text())), {ACCURACY_PLOT: "plots/accuracy_by_benchmark.png"})
    assert 'src="plots/accuracy_by_benchmark.png"' in linked


def test_finemed_leaderboard_render_is_the_entry_point(tmp_path, capsys):
    from finemed_eval.cli import main

    assert main(["leaderboard", "render", str(FIXTURE), "--out", str(tmp_path), "--link-plots"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("| Model | Average | MedQA |") and "### Paired comparisons" in out.out
    assert 'src="plots/gold_ll_change.png"' in (tmp_path / "leaderboard.html").read_text(encoding="utf-8")


def test_render_only_reported_rows(board, tmp_path):
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(_board_with([e for e in board["entries"] if e["status"] == "reported"])))
    paths = render(src)
    assert set(paths) == {"html", "markdown"}
    assert "No measured results to plot." in paths["html"].read_text(encoding="utf-8")



# --------------------------------------------------------------------------- hostile names, safe writes

HOSTILE = {  # fixture name -> a name that once broke an output (or could)
    OFF: "off\nsecond line $x$ a|b",  # a newline split the Markdown row
    FULL: "full $\\frac{$ back\\slash\\| `code` *em* [link](x) ~~s~~ _u_",  # '$\frac{$' crashed matplotlib
    EVIL: "tiny <script>alert(1)</script>",
    PAPER: "paper \\| $y$ <b>bold</b>",
}


def _renamed(board: dict, names: dict[str, str]) -> dict:
    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value
    return walk(board)


def _markdown_cells(line: str) -> list[str]:
    """A GFM table row split as GitHub splits it: on every '|' not escaped by a backslash; each cell
    unescaped (backslash escapes, then HTML entities) to the text a reader sees."""
    import html

    cells, cell, chars = [], "", iter(line.strip()[1:-1])
    for ch in chars:
        if ch == "\\":
            cell += next(chars)
        elif ch == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += ch
    return [html.unescape(c.strip()) for c in [*cells, cell]]


def _one_line(name: str) -> str:
    return " ".join(name.split("\n"))


def test_hostile_names_survive_every_output(board, tmp_path):
    """Newlines, '$...$', '|', backslashes, markup: the page, the Markdown and both plots are written,
    and each shows every name as it is (Markdown: one line)."""
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(_renamed(board, HOSTILE)), encoding="utf-8")
    paths = render(src)
    assert set(paths) == {"html", "markdown", ACCURACY_PLOT, GOLD_LL_PLOT}

    md = paths["markdown"].read_text(encoding="utf-8").splitlines()
    header = _markdown_cells(md[0])
    main = [_markdown_cells(line) for line in md[2:6]]
    assert md[6] == "" and all(len(cells) == len(header) for cells in main)
    assert [cells[0] for cells in main] == [_one_line(HOSTILE[n]) for n in (OFF, FULL, EVIL)] + [f"*{HOSTILE[PAPER]}* (paper)"]  # italic: a paper row
    pair_rows = [_markdown_cells(line) for line in md if line.startswith("| ") and " vs " in line]
    assert pair_rows and all(len(cells) == 9 for cells in pair_rows)  # the pair table has 9 columns
    assert {cells[0] for cells in pair_rows} == {f"{_one_line(HOSTILE[FULL])} vs {_one_line(HOSTILE[OFF])}"}
    assert "<script>" not in paths["markdown"].read_text(encoding="utf-8")

    page = paths["html"].read_text(encoding="utf-8")
    assert page.count("<script>") == 1 and "<b>bold" not in page  # only the page's own script; no markup from names
    assert [r["model"] for r in _parse_table(page)] == [HOSTILE[n] for n in (OFF, FULL, EVIL, PAPER)]

    from matplotlib.image import imread

    for name in (ACCURACY_PLOT, GOLD_LL_PLOT):
        image = imread(paths[name])
        assert image.shape[0] > 200 and image.shape[1] > 400  # a whole chart, legend and labels drawn


def test_a_failed_render_leaves_the_previous_outputs_whole(board, tmp_path):
    """Every output is made before any is written, and each is replaced by rename: a name that
    cannot be encoded (a lone surrogate) fails the render and loses nothing, leaves no temp file."""
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(board), encoding="utf-8")
    render(src)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != src}
    src.write_text(json.dumps(_renamed(board, {PAPER: "paper \ud800"})), encoding="utf-8")  # a reported row: not plotted
    with pytest.raises(UnicodeEncodeError):
        render(src)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != src} == before


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_honour_the_umask_of_the_moment(board, tmp_path, umask):
    from finemed_eval.leaderboard.cells import write_json_atomic

    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(board), encoding="utf-8")
    previous = os.umask(umask)  # after the modules were imported: a umask read at import would be stale
    try:
        written = [*render(src).values()]
        write_json_atomic(tmp_path / "cell.json", {"a": 1})
    finally:
        os.umask(previous)
    for path in [*written, tmp_path / "cell.json"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_importing_the_leaderboard_never_touches_the_umask():
    """cells.py once set the process umask to 0 for a moment at import (a race for every other thread)."""
    probe = (
        "import os\n"
        "calls = []\n"
        "real = os.umask\n"
        "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
        "import finemed_eval.leaderboard.cells, finemed_eval.leaderboard.render, finemed_eval.zoo\n"
        "print(calls)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- groups (a Table 1 run)

TABLE1_MAIN = ["finemed_ceval_medical", "finemed_cmb_exam", "finemed_cmexam", "finemed_mmlu_medical",
               "finemed_medqa", "finemed_medmcqa"]
SMOL = "smollm2-135m ttt=off"
SMOL_TTT = "smollm2-135m ttt=full"


def _entry(model: str, task: str, benchmark: str, mean: float, *, metric: str = "acc", parent: str | None = None,
           status: str = "measured", ttt: str = "off") -> dict:
    """A schema-valid entry: measured ones with two seeds (mean ± 0.01), reported ones as the paper gives them."""
    base = {"model": model, "task": task, "benchmark": benchmark, "metric": metric, "status": status, "mean": mean,
            "num_fewshot": 3, "limit": None, "task_version": None, "task_hash": None}
    if status == "reported":
        return base | {"model_args": {}, "seeds": [], "std": None, "n": None, "date": None,
                       "lm_eval_version": None, "git_revision": None, "source": "FineMedLM-o1 paper, Table 1"}
    return base | {"model_args": {"pretrained": "p", "ttt": ttt}, "parent": parent,
                   "seeds": [{"seed": 0, "value": mean - 0.01}, {"seed": 1, "value": mean + 0.01}],
                   "std": 0.0141, "n": 40, "date": "2026-11-22T03:00:00Z", "lm_eval_version": "0.4.13",
                   "git_revision": "abc123"}


def _table1_measured(model: str, shift: float, ttt: str) -> list[dict]:
    """What aggregating a `tasks: [finemed_table1]` run gives: the table group itself has no score
    (no aggregate_metric_list), C-Eval and MMLU are groups with one, CMB and CMExam add per-kind accuracy."""
    def m(task, benchmark, mean, **kw):
        return _entry(model, task, benchmark, round(mean + shift, 4), ttt=ttt, **kw)

    t1, ceval, mmlu = "finemed_table1", "finemed_ceval_medical", "finemed_mmlu_medical"
    return [
        m(ceval, "C-Eval", 0.30, parent=t1),
        m("finemed_ceval_clinical_medicine", "clinical_medicine", 0.25, parent=ceval),
        m("finemed_ceval_physician", "physician", 0.35, parent=ceval),
        m("finemed_cmb_exam", "CMB-Exam", 0.20, parent=t1),
        m("finemed_cmb_exam", "CMB-Exam", 0.24, metric="acc_single", parent=t1),
        m("finemed_cmb_exam", "CMB-Exam", 0.05, metric="acc_multi", parent=t1),
        # acc is the main metric even when another metric of the task comes first
        m("finemed_cmexam", "CMExam", 0.26, metric="acc_single", parent=t1),
        m("finemed_cmexam", "CMExam", 0.22, parent=t1),
        m("finemed_cmexam", "CMExam", 0.04, metric="acc_multi", parent=t1),
        # a subtask listed before its group: the group still stands for it
        m("finemed_mmlu_anatomy", "anatomy", 0.40, parent=mmlu),
        m(mmlu, "MMLU", 0.42, parent=t1),
        m("finemed_mmlu_clinical_knowledge", "clinical_knowledge", 0.44, parent=mmlu),
        m("finemed_medqa", "MedQA", 0.28, parent=t1),
        m("finemed_medmcqa", "MedMCQA", 0.32, parent=t1),
    ]


def table1_board() -> dict:
    paper = {"finemed_ceval_medical": ("C-Eval", 0.5), "finemed_cmb_exam": ("CMB-Exam", 0.6),
             "finemed_cmexam": ("CMExam", 0.55), "finemed_mmlu_medical": ("MMLU", 0.78),
             "finemed_medqa": ("MedQA", 0.58), "finemed_medmcqa": ("MedMCQA", 0.52)}
    entries = _table1_measured(SMOL, 0.0, "off") + _table1_measured(SMOL_TTT, 0.02, "full")
    entries += [_entry(PAPER, t, b, v, status="reported") for t, (b, v) in paper.items()]
    return _board_with(entries, keep_pairs=True, tasks=["finemed_table1"], seeds=[0, 1])


def test_table1_board_matches_runner_schema():
    import jsonschema

    schema = json.loads(Path(V.__file__).with_name("schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(table1_board())


def test_group_layout_one_main_column_per_paper_benchmark():
    shape = V.layout(table1_board())
    assert [c.key for c in shape.main] == TABLE1_MAIN
    assert [c.label for c in shape.main] == ["C-Eval", "CMB-Exam", "CMExam", "MMLU", "MedQA", "MedMCQA"]
    details = {d.column.task: [(c.key, d.label(c)) for c in d.columns] for d in shape.details}
    assert details == {
        "finemed_ceval_medical": [("finemed_ceval_medical", "overall"),
                                  ("finemed_ceval_clinical_medicine", "clinical_medicine"),
                                  ("finemed_ceval_physician", "physician")],
        "finemed_cmb_exam": [("finemed_cmb_exam", "overall"), ("finemed_cmb_exam:acc_single", "acc_single"),
                             ("finemed_cmb_exam:acc_multi", "acc_multi")],
        "finemed_cmexam": [("finemed_cmexam", "overall"), ("finemed_cmexam:acc_single", "acc_single"),
                           ("finemed_cmexam:acc_multi", "acc_multi")],
        "finemed_mmlu_medical": [("finemed_mmlu_medical", "overall"), ("finemed_mmlu_anatomy", "anatomy"),
                                 ("finemed_mmlu_clinical_knowledge", "clinical_knowledge")],
    }


def test_group_average_is_over_the_six_benchmarks_only():
    b = table1_board()
    rows = {(r.model, r.status): r for r in V.rows(b)}
    smol = rows[(SMOL, "measured")]
    assert sorted(smol.cells) == sorted(TABLE1_MAIN)
    assert smol.average == pytest.approx((0.30 + 0.20 + 0.22 + 0.42 + 0.28 + 0.32) / 6)
    assert rows[(PAPER, "reported")].average == pytest.approx((0.5 + 0.6 + 0.55 + 0.78 + 0.58 + 0.52) / 6)
    assert V.coverage(list(rows.values())) == {"measured": 6, "reported": 6}


def test_group_markdown_main_table_and_details():
    md = markdown_table(V.build_view(table1_board()))
    lines = md.splitlines()
    assert lines[:5] == [
        "| Model | Average | C-Eval | CMB-Exam | CMExam | MMLU | MedQA | MedMCQA |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        "| smollm2-135m ttt=off | 29.00 | 30.00 ± 1.41 | 20.00 ± 1.41 | 22.00 ± 1.41 | 42.00 ± 1.41 | 28.00 ± 1.41 | 32.00 ± 1.41 |",
        "| smollm2-135m ttt=full | 31.00 | 32.00 ± 1.41 | 22.00 ± 1.41 | 24.00 ± 1.41 | 44.00 ± 1.41 | 30.00 ± 1.41 | 34.00 ± 1.41 |",
        "| *FineMedLM-o1 (TTT)* (paper) | *58.83* | *50.00* | *60.00* | *55.00* | *78.00* | *58.00* | *52.00* |",
    ]
    mmlu = lines.index("### Details: MMLU")
    assert lines[mmlu + 2: mmlu + 6] == [
        "| Model | overall | anatomy | clinical_knowledge |",
        "|---|---:|---:|---:|",
        "| smollm2-135m ttt=off | 42.00 ± 1.41 | 40.00 ± 1.41 | 44.00 ± 1.41 |",
        "| smollm2-135m ttt=full | 44.00 ± 1.41 | 42.00 ± 1.41 | 46.00 ± 1.41 |",
    ]
    cmb = lines.index("### Details: CMB-Exam")
    assert lines[cmb + 2] == "| Model | overall | acc_single | acc_multi |"
    assert [line for line in lines if line.startswith("### Details")] == [
        "### Details: C-Eval", "### Details: CMB-Exam", "### Details: CMExam", "### Details: MMLU"]
    # paper rows have no subtask numbers, so they appear in the main table only
    assert md.count("(paper)") == 1
    assert "- subtasks and secondary metrics (e.g. acc_single / acc_multi) are under Details and not in the Average" in lines


def test_group_html_main_and_details_tables():
    page = html_page(V.build_view(table1_board()), {})
    main = _parsed(page)
    assert main.keys == ["model", "average", *TABLE1_MAIN]
    smol = {(r["model"], r["status"]): r["cells"] for r in main.rows}[(SMOL, "measured")]
    assert float(smol["average"][0]) == pytest.approx(0.29) and smol["average"][1] == "29.00"
    assert smol["finemed_mmlu_medical"] == ("0.42", "42.00 ± 1.41")
    details = _parsed(page, "details-finemed_mmlu_medical")
    assert details.keys == ["model", "finemed_mmlu_medical", "finemed_mmlu_anatomy", "finemed_mmlu_clinical_knowledge"]
    assert list(details.labels.values()) == ["Model", "overall", "anatomy", "clinical_knowledge"]
    assert [r["model"] for r in details.rows] == [SMOL, SMOL_TTT]
    assert details.rows[0]["cells"]["finemed_mmlu_anatomy"] == ("0.4", "40.00 ± 1.41")
    cmexam = _parsed(page, "details-finemed_cmexam")
    assert cmexam.keys == ["model", "finemed_cmexam", "finemed_cmexam:acc_single", "finemed_cmexam:acc_multi"]
    assert page.index('id="leaderboard"') < page.index("<h2>Details</h2>") < page.index('id="details-finemed_ceval_medical"')


def test_group_board_renders_everything(tmp_path):
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(table1_board()), encoding="utf-8")
    assert set(render(src)) == {"html", "markdown", ACCURACY_PLOT, GOLD_LL_PLOT}


def test_subtask_without_parent_still_goes_to_its_groups_details():
    # a model that ran finemed_mmlu_anatomy on its own has no parent on that entry; the board knows better
    b = table1_board()
    b["entries"].append(_entry(EVIL, "finemed_mmlu_anatomy", "anatomy", 0.5))
    assert [c.key for c in V.columns(b)] == TABLE1_MAIN
    evil = next(r for r in V.rows(b) if r.model == EVIL)
    assert evil.cells == {} and evil.average is None
    mmlu = next(d for d in V.layout(b).details if d.column.task == "finemed_mmlu_medical")
    assert [r.model for r in V.detail_rows(b, mmlu)] == [SMOL, SMOL_TTT, EVIL]


def test_a_scored_group_above_stands_for_everything_below_it():
    b = table1_board()
    b["entries"].insert(0, _entry(SMOL, "finemed_table1", "Table 1", 0.3))
    shape = V.layout(b)
    assert [c.key for c in shape.main] == ["finemed_table1"]
    [d] = shape.details
    assert {c.task for c in d.columns} >= {"finemed_mmlu_medical", "finemed_mmlu_anatomy", "finemed_cmexam"}


def test_first_metric_is_main_when_a_task_has_no_acc(board):
    for e in board["entries"]:
        if e["benchmark"] == "MedMCQA":
            e["metric"] = "exact_match,strict-match"
    flexible = copy.deepcopy(next(e for e in board["entries"] if e["benchmark"] == "MedMCQA"))
    board["entries"].append(flexible | {"metric": "exact_match,flexible-extract"})
    assert [c.key for c in V.columns(board)] == [
        "finemed_medqa", "finemed_medmcqa:exact_match,strict-match", "finemed_pubmedqa", "finemed_mmlu_pro_biology"]
    [d] = V.layout(board).details
    assert [d.label(c) for c in d.columns] == ["overall (exact_match,strict-match)", "exact_match,flexible-extract"]


# --------------------------------------------------------------------------- real browser


class _TableParser(HTMLParser):
    """Rows of one <table id=...>: model, status, class and {column key: (data-value, text)}."""

    def __init__(self, table_id: str = "leaderboard"):
        super().__init__()
        self.table_id = table_id
        self.labels: dict[str, str] = {}
        self._th: str | None = None
        self.keys: list[str] = []
        self.sorted: dict[str, str] = {}
        self.rows: list[dict] = []
        self._in_table = self._in_cell = False
        self._cell: list = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._in_table = a.get("id") == self.table_id
        elif self._in_table and tag == "th":
            self.keys.append(a["data-key"])
            self._th = a["data-key"]
            self.labels[self._th] = ""
            if a.get("aria-sort"):
                self.sorted[a["data-key"]] = a["aria-sort"]
        elif self._in_table and tag == "tr" and "data-model" in a:
            self.rows.append({"model": a["data-model"], "status": a["data-status"], "class": a.get("class"), "cells": {}})
        elif self._in_table and tag == "td":
            self._in_cell, self._cell = True, [a.get("data-value", ""), ""]

    def handle_data(self, data):
        if self._in_cell:
            self._cell[1] += data
        elif self._th is not None:
            self.labels[self._th] += data

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag == "th":
            self._th = None
        elif tag == "td" and self._in_cell:
            row = self.rows[-1]
            row["cells"][self.keys[len(row["cells"])]] = (self._cell[0], " ".join(self._cell[1].split()))
            self._in_cell = False


def _parse_table(page: str, table_id: str = "leaderboard") -> list[dict]:
    return _parsed(page, table_id).rows


def _parsed(page: str, table_id: str = "leaderboard") -> _TableParser:
    p = _TableParser(table_id)
    p.feed(page)
    return p


def _parse_sorted(page: str) -> dict[str, str]:
    return _parsed(page).sorted


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=40)
    except subprocess.TimeoutExpired:
        # a JS dialog (e.g. alert() from an unescaped <script> in a model name) blocks headless Chromium forever
        pytest.fail("chromium did not finish in 40 s: the page may have opened a JS dialog (unescaped content?)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"), reason="/usr/bin/chromium not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    return render(FIXTURE, out)["html"]


@needs_chromium
def test_browser_dom_has_table_values(rendered, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", rendered.as_uri()).stdout
    rows = _parse_table(dom)
    assert [(r["model"], r["status"]) for r in rows] == [
        (OFF, "measured"), (FULL, "measured"), (EVIL, "measured"), (PAPER, "reported")]
    by_model = {r["model"]: r["cells"] for r in rows}
    assert by_model[OFF]["finemed_medqa"] == ("0.2967", "29.67 ± 1.53")
    assert by_model[FULL]["average"][1] == "40.00"
    assert by_model[EVIL]["model"][1] == EVIL  # shown as text, not executed
    assert by_model[EVIL]["average"][1] == "41.00 (2/3)"
    assert by_model[PAPER]["finemed_mmlu_pro_biology"] == ("0.8054", "80.54")
    assert by_model[PAPER]["average"][1] == "70.27"
    assert dom.count("<script>") == 1
    assert dom.count('src="data:image/png;base64,') == 2


@needs_chromium
@pytest.mark.parametrize("fragment, order, aria", [
    ("#sort=average:desc", [PAPER, EVIL, FULL, OFF], "descending"),  # 70.27, 41.00, 40.00, 36.56
    ("#sort=finemed_medqa", [OFF, FULL, EVIL, PAPER], "ascending"),
    ("#sort=finemed_mmlu_pro_biology:desc", [PAPER, OFF, FULL, EVIL], "descending"),  # missing cells last
    ("#sort=finemed_medmcqa", [OFF, FULL, EVIL, PAPER], "ascending"),  # missing last also when ascending
    ("#sort=model", [PAPER, FULL, OFF, EVIL], "ascending"),  # localeCompare: "ttt=full" < "ttt=off"
])
def test_browser_sorts_from_url_hash(rendered, tmp_path, fragment, order, aria):
    dom = _chromium(tmp_path, "--dump-dom", rendered.as_uri() + fragment).stdout
    assert [r["model"] for r in _parse_table(dom)] == order
    key = fragment.split("=")[1].split(":")[0]
    assert _parse_sorted(dom) == {key: aria}


@needs_chromium
def test_browser_sort_key_with_metric_filter(board, tmp_path):
    # lm-eval metrics may keep a filter after a comma, so column keys can hold ':' and ','
    for e in board["entries"]:
        if e["benchmark"] == "MedMCQA":
            e["metric"] = "exact_match,strict-match"
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(board), encoding="utf-8")
    page = render(src)["html"]
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri() + "#sort=finemed_medmcqa:exact_match,strict-match:desc").stdout
    assert [r["model"] for r in _parse_table(dom)] == [FULL, OFF, EVIL, PAPER]
    assert _parse_sorted(dom) == {"finemed_medmcqa:exact_match,strict-match": "descending"}


class _Text(HTMLParser):
    """The page's text as a reader sees it: one line per block element, no script or style."""

    BLOCKS = {"p", "h1", "h2", "h3", "tr", "li", "figure", "div", "table"}

    def __init__(self):
        super().__init__()
        self.lines, self._line, self._skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")
        if tag in self.BLOCKS:
            self._flush()
        if tag == "img":
            self._line.append(f"[image: {dict(attrs).get('alt')}]")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")
        if tag in self.BLOCKS:
            self._flush()
        elif tag in ("td", "th"):
            self._line.append("|")

    def handle_data(self, data):
        if not self._skip:
            self._line.append(data)

    def _flush(self):
        text = " ".join(" ".join(self._line).split())
        if text:
            self.lines.append(text)
        self._line = []


def _reader_text(dom: str) -> list[str]:
    t = _Text()
    t.feed(dom)
    t._flush()
    return t.lines


@needs_chromium
def test_browser_reader_sees_rows_and_the_paired_ttt_line(rendered, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", rendered.as_uri() + "#sort=average:desc").stdout
    lines = _reader_text(dom)
    # the main table as a reader sees it after sorting by Average (best first)
    table = lines[lines.index("Model | Average | MedQA | MedMCQA | PubMedQA | MMLU-Pro Biology |") + 1:][:4]
    assert table == [
        "FineMedLM-o1 (TTT) paper | 70.27 | 60.00 | — | — | 80.54 |",
        "tiny <script>alert(1)</script> | 41.00 (2/3) | 35.00 | — | 47.00 | — |",
        "smollm2-135m ttt=full | 40.00 | 32.50 ± 2.50 | 30.00 ± 2.50 | 57.50 ± 2.50 | — |",
        "smollm2-135m ttt=off | 36.56 | 29.67 ± 1.53 | 27.50 ± 2.50 | 52.50 ± 2.50 | — |",
    ]
    # the paired TTT line under its heading, then the per-document plot
    at = lines.index("Did it help? Paired comparisons")
    assert lines[at + 1] == (
        "smollm2-135m ttt=full vs smollm2-135m ttt=off on MedQA (pooled over 3 seeds): accuracy +3.33 pp "
        "(95% CI -2.50 to +9.17), flips 9 wrong→right / 5 right→wrong, exact McNemar p = 0.424, n = 120, "
        "mean change of gold log-likelihood +0.0153"
    )
    at = lines.index("smollm2-135m ttt=full vs smollm2-135m ttt=off · MedQA |")  # the per-seed table of the pair
    assert lines[at + 1:at + 5] == [
        "0 | +2.50 | -7.50 to +12.50 | 3 | 2 | 1 | +0.0147 |",
        "1 | +2.50 | -7.50 to +12.50 | 3 | 2 | 1 | +0.0093 |",
        "2 | +5.00 | -5.00 to +15.00 | 3 | 1 | 0.625 | +0.0220 |",
        "pooled | +3.33 | -2.50 to +9.17 | 9 | 5 | 0.424 | +0.0153 |",
    ]
    assert any(line.startswith("[image: Per-document change of the gold answer's log-likelihood") for line in lines)
    shot = tmp_path / "shot.png"  # rendered by the real browser without error, at the asked size
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars", rendered.as_uri())
    import matplotlib.image as mpimg

    assert mpimg.imread(shot).shape[:2] == (900, 1280)


@needs_chromium
def test_browser_group_page_has_main_and_details_tables(tmp_path):
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(table1_board()), encoding="utf-8")
    page = render(src)["html"]
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri() + "#sort=average:desc").stdout
    main = _parsed(dom)
    assert main.keys == ["model", "average", *TABLE1_MAIN]
    assert [r["model"] for r in main.rows] == [PAPER, SMOL_TTT, SMOL]  # sorted by the six-benchmark average
    for task in ("finemed_ceval_medical", "finemed_cmb_exam", "finemed_cmexam", "finemed_mmlu_medical"):
        assert [r["model"] for r in _parse_table(dom, f"details-{task}")] == [SMOL, SMOL_TTT]
    shot = tmp_path / "shot.png"
    lines = _reader_text(dom)
    assert "Model | overall | anatomy | clinical_knowledge |" in lines  # the MMLU details, as a reader sees them
