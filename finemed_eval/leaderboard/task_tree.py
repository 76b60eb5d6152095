"""How lm-eval tasks nest: groups and tags and their members, both in the task index and in results."""

from __future__ import annotations

from typing import Any


def group_children(cfg: dict[str, Any]) -> list[str]:
    """Names listed under a group's `task:`; entries may be names or inline task dicts."""
    children = cfg.get("task") or []
    names = []
    for c in children if isinstance(children, list) else [children]:
        name = c if isinstance(c, str) else c.get("task") if isinstance(c, dict) else None
        if isinstance(name, str):
            names.append(name)
    return names


def members(task_index: dict[str, Any], name: str) -> list[str]:
    """Direct members of a group (in YAML order) or tag (sorted); [] for a task or an unknown name."""
    entry = task_index.get(name)
    if entry is None:
        return []
    if entry.kind.name == "GROUP":
        return group_children(entry.cfg or {})
    if entry.kind.name == "TAG":
        return sorted(k for k, e in task_index.items() if name in (e.tags or ()))
    return []


def expand_task_names(task_manager: Any, names: tuple[str, ...] | list[str]) -> set[str]:
    """The names themselves plus every subtask of the groups and tags among them."""
    out: set[str] = set()
    stack = list(names)
    while stack:
        n = stack.pop()
        if n not in out:
            out.add(n)
            stack.extend(members(task_manager.task_index, n))
    return out


def leaves(name: str, group_subtasks: dict[str, list[str]]) -> set[str]:
    """The plain tasks under a row of lm-eval's results (the row itself if it is not a group)."""
    if name not in group_subtasks:
        return {name}
    out: set[str] = set()
    for child in group_subtasks[name]:
        out |= leaves(child, group_subtasks)
    return out


def parent(row: str, group_subtasks: dict[str, list[str]]) -> str | None:
    """The group a results row is a direct subtask of, if any."""
    return next((g for g, children in group_subtasks.items() if row in children), None)
