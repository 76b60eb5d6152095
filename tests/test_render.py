"""Tests for finemed_eval.leaderboard.render: pure table/markdown/HTML functions, then the real page in headless Chromium."""

from __future__ import annotations

import copy
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from finemed_eval.leaderboard import render as R

FIXTURE = Path(__file__).parent / "fixtures" / "leaderboard_small.json"
CHROMIUM = Path("/usr/bin/chromium")
EVIL = "tiny <script>alert(1)</script>"
OFF, FULL, PAPER = "smollm2-135m ttt=off", "smollm2-135m ttt=full", "FineMedLM-o1 (TTT)"


@pytest.fixture()
def board() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _board_with(entries: list[dict], **config) -> dict:
    b = json.loads(FIXTURE.read_text(encoding="utf-8"))
    b["entries"] = entries
    b["config"].update(config)
    return b


# --------------------------------------------------------------------------- pure functions


def test_markdown_rows_and_averages_exact(board):
    lines = R.markdown_table(board).splitlines()
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
    rows = {(r.model, r.status): r for r in R.rows(board)}
    assert rows[(PAPER, "measured")].average == pytest.approx(0.40)
    assert rows[(PAPER, "reported")].average == pytest.approx((0.60 + 0.8054) / 2)
    md = R.markdown_table(board).splitlines()
    assert "| FineMedLM-o1 (TTT) | 40.00 (1/3) | 40.00 | — | — | — |" in md
    assert "| *FineMedLM-o1 (TTT)* (paper) | *70.27* | *60.00* | — | — | *80.54* |" in md
    # measured rows all come before reported ones
    statuses = [r.status for r in R.rows(board)]
    assert statuses == sorted(statuses, key=lambda s: s != "measured")


def test_html_escapes_model_names(board):
    page = R.html_page(board, {})
    assert "<script>alert" not in page
    assert "tiny &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own sorting script
    cells = _parse_table(page)
    assert [r["model"] for r in cells] == [OFF, FULL, EVIL, PAPER]


def test_html_table_cells_and_reported_section(board):
    page = R.html_page(board, {})
    rows = {(r["model"], r["status"]): r for r in _parse_table(page)}
    off = rows[(OFF, "measured")]
    assert off["cells"]["finemed_medqa"] == ("0.2967", "29.67 ± 1.53")
    assert off["cells"]["finemed_mmlu_pro_biology"] == ("", "—")
    assert float(off["cells"]["average"][0]) == pytest.approx((0.2967 + 0.275 + 0.525) / 3)
    paper = rows[(PAPER, "reported")]
    assert paper["class"] == "reported" and "paper" in paper["cells"]["model"][1]
    assert 'title="average over: MedQA, MMLU-Pro Biology"' in page
    assert 'id="reported"' in page and "FineMedLM-o1 paper, Table 2" in page
    assert "TTT-gain chart skipped" in page  # no plots were passed in


def test_fixture_matches_runner_schema(board):
    # the renderer's fixture must stay a board the runner could actually write
    schema_path = Path(R.__file__).with_name("schema.json")
    if not schema_path.exists():
        pytest.skip(f"{schema_path} not present")
    import jsonschema

    jsonschema.Draft202012Validator(json.loads(schema_path.read_text())).validate(board)


def test_footnote_lists_mixed_revisions(board):
    board["entries"][0]["git_revision"] = "old999"
    assert any(line == "measured cells come from git revisions: abc123, old999" for line in R.run_details(board))
    assert not any("lm-eval versions" in line for line in R.run_details(board))


def test_metric_shown_in_header_when_not_acc(board):
    for e in board["entries"]:
        if e["benchmark"] == "MedMCQA":
            e["metric"] = "acc_norm"
    assert "| MedMCQA (acc_norm) |" in R.markdown_table(board).splitlines()[0] + "|"
    assert 'data-key="finemed_medmcqa:acc_norm"' in R.html_page(board, {})


def test_ttt_pair_and_gain(board):
    assert R.ttt_pairs(board) == [(OFF, FULL)]
    assert R.pair_label(board, OFF, FULL) == "smollm2-135m: ttt=full − off"
    gains = R.ttt_gains(board, OFF, FULL)
    assert set(gains) == {"MedQA", "MedMCQA", "PubMedQA"}
    assert gains["MedQA"][0] == pytest.approx(100 * (0.325 - 0.2967))
    # std over seed-paired differences 1.5, 2.0, 5.0 pp
    assert gains["MedQA"][1] == pytest.approx(1.8930, abs=1e-3)


def test_render_single_model_single_seed_no_reported(board, tmp_path):
    one = [e for e in board["entries"] if e["model"] == EVIL]
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(_board_with(one, seeds=[0])), encoding="utf-8")
    paths = R.render(src)
    assert set(paths) == {"html", "markdown", R.ACCURACY_PLOT}
    assert paths[R.ACCURACY_PLOT] == tmp_path / "plots" / "accuracy_by_benchmark.png"
    assert not (tmp_path / "plots" / "ttt_gain.png").exists()
    md = paths["markdown"].read_text(encoding="utf-8").splitlines()
    assert md[2] == "| tiny &lt;script&gt;alert(1)&lt;/script&gt; | 41.00 | 35.00 | 47.00 |"
    page = paths["html"].read_text(encoding="utf-8")
    assert "No TTT pair" in page and "TTT-gain chart skipped" in page
    assert "no numbers reported by the paper" in page


def test_render_full_fixture_writes_everything(tmp_path):
    paths = R.render(FIXTURE, tmp_path / "out")
    assert set(paths) == {"html", "markdown", R.ACCURACY_PLOT, R.TTT_PLOT}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 500
    page = paths["html"].read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 2  # self-contained: plots inlined
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    linked = R.html_page(json.loads(FIXTURE.read_text()), {R.ACCURACY_PLOT: "plots/accuracy_by_benchmark.png"})
    assert 'src="plots/accuracy_by_benchmark.png"' in linked


def test_render_only_reported_rows(board, tmp_path):
    src = tmp_path / "leaderboard.json"
    src.write_text(json.dumps(_board_with([e for e in board["entries"] if e["status"] == "reported"])))
    paths = R.render(src)
    assert set(paths) == {"html", "markdown"}
    assert "No measured results to plot." in paths["html"].read_text(encoding="utf-8")


# --------------------------------------------------------------------------- real browser


class _TableParser(HTMLParser):
    """Rows of <table id="leaderboard">: model, status, class and {column key: (data-value, text)}."""

    def __init__(self):
        super().__init__()
        self.keys: list[str] = []
        self.sorted: dict[str, str] = {}
        self.rows: list[dict] = []
        self._in_table = self._in_cell = False
        self._cell: list = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._in_table = a.get("id") == "leaderboard"
        elif self._in_table and tag == "th":
            self.keys.append(a["data-key"])
            if a.get("aria-sort"):
                self.sorted[a["data-key"]] = a["aria-sort"]
        elif self._in_table and tag == "tr" and "data-model" in a:
            self.rows.append({"model": a["data-model"], "status": a["data-status"], "class": a.get("class"), "cells": {}})
        elif self._in_table and tag == "td":
            self._in_cell, self._cell = True, [a.get("data-value", ""), ""]

    def handle_data(self, data):
        if self._in_cell:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag == "td" and self._in_cell:
            row = self.rows[-1]
            row["cells"][self.keys[len(row["cells"])]] = (self._cell[0], " ".join(self._cell[1].split()))
            self._in_cell = False


def _parse_table(page: str) -> list[dict]:
    p = _TableParser()
    p.feed(page)
    return p.rows


def _parse_sorted(page: str) -> dict[str, str]:
    p = _TableParser()
    p.feed(page)
    return p.sorted


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


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    return R.render(FIXTURE, out)["html"]


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
    page = R.render(src)["html"]
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri() + "#sort=finemed_medmcqa:exact_match,strict-match:desc").stdout
    assert [r["model"] for r in _parse_table(dom)] == [FULL, OFF, EVIL, PAPER]
    assert _parse_sorted(dom) == {"finemed_medmcqa:exact_match,strict-match": "descending"}


@needs_chromium
def test_browser_screenshot_is_not_blank(rendered, tmp_path):
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars", rendered.as_uri())
    assert shot.is_file() and shot.stat().st_size > 20_000
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(shot)
    assert img.shape[:2] == (900, 1280)
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std(axis=0).max() > 0.05  # not a single flat colour
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 100  # text, table shading and chart colours
