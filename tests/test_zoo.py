"""Zoo names resolve to hub ids or the embedded model lazily; anything else fails with a suggestion."""

from __future__ import annotations

import pytest

import finemed_eval.embedded
from finemed_eval import zoo
from finemed_eval.zoo import ZOO, ZooError, canonical_model, is_embedded, list_zoo, resolve_pretrained


@pytest.fixture(autouse=True)
def empty_registry(tmp_path, monkeypatch):
    """Trained models registered on this machine must not leak into these tests."""
    monkeypatch.setenv("FINEMED_ZOO_DIR", str(tmp_path / "zoo"))


def test_zoo_has_the_paper_models_with_their_hub_ids():
    assert ZOO["finemedlm"].source == "hongzhouyu/FineMedLM"
    assert ZOO["finemedlm-o1"].source == "hongzhouyu/FineMedLM-o1"
    assert ZOO["huatuogpt-o1-8b"].source == "FreedomIntelligence/HuatuoGPT-o1-8B"
    assert ZOO["llama3.1-8b-instruct"].source == "meta-llama/Llama-3.1-8B-Instruct"
    assert ZOO["smollm2-135m-instruct"].embedded
    assert "Table 2" in ZOO["finemedlm-o1"].paper_tables
    assert [e.name for e in list_zoo()] == sorted(ZOO)


def test_hub_names_resolve_without_loading_anything():
    assert resolve_pretrained("finemedlm-o1") == "hongzhouyu/FineMedLM-o1"


def test_embedded_model_resolves_lazily(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(finemed_eval.embedded, "embedded_model_dir", lambda: calls.append(1) or tmp_path)
    # naming the model (validation, cache keys) never converts it ...
    assert canonical_model("smollm2-135m-instruct").startswith("embedded:SmolLM2-135M-Instruct")
    assert calls == []
    # ... resolving it does
    assert resolve_pretrained("smollm2-135m-instruct") == str(tmp_path)
    assert calls == [1]


def test_local_paths_and_hub_ids_pass_through(tmp_path):
    assert resolve_pretrained(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_pretrained("some-org/some-model_v1.5") == "some-org/some-model_v1.5"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("finemedlm-01", "finemedlm-o1"),
        ("FineMedLM-o1", "finemedlm-o1"),
        ("huatuo", "huatuogpt2-7b"),  # the closer of the two HuatuoGPT entries
        ("huatuogpt-o1", "huatuogpt-o1-8b"),
        ("smollm2-135m", "smollm2-135m-instruct"),
    ],
)
def test_unknown_names_get_a_close_match(name, suggestion):
    with pytest.raises(ZooError) as err:
        resolve_pretrained(name)
    assert f"Did you mean {suggestion!r}" in str(err.value)
    assert "finemedlm-o1" in str(err.value)  # the message lists the zoo


@pytest.mark.parametrize("name", ["./no/such/dir", "a/b/c", "", "totally-unknown"])
def test_non_paths_non_hub_ids_are_rejected(name):
    with pytest.raises(ZooError, match="Zoo names:"):
        canonical_model(name)


def test_zoo_error_is_a_value_error():
    assert issubclass(ZooError, ValueError)


def test_is_embedded_recognises_name_and_converted_folder(tmp_path, monkeypatch):
    assert is_embedded("smollm2-135m-instruct")
    assert not is_embedded("finemedlm")
    assert not is_embedded(str(tmp_path))
    folder = tmp_path / f"{finemed_eval.embedded.EMBEDDED_NAME}-Q4_1-f32"
    folder.mkdir()
    (folder / finemed_eval.embedded._DONE_MARKER).write_text("converted\n")
    assert zoo.is_embedded(str(folder))
