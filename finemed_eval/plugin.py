"""The only place that touches lm-eval's registries: the `finemed_ttt` model, our task folder, and the
TTT log written beside lm-eval's results."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from types import ModuleType

MODEL_NAME = "finemed_ttt"
MODEL_TARGET = "finemed_eval.ttt.lm:FineMedTTT"


def task_folder() -> Path:
    import finemed_eval.tasks

    return Path(finemed_eval.tasks.__file__).parent


def register_model(models_module: ModuleType | None = None) -> None:
    """Register `finemed_ttt` lazily: lm-eval imports our module only when the model is used."""
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def add_task_folder(manager_module: ModuleType | None = None) -> None:
    """Make every TaskManager index our task folder before the user's include_path."""
    if manager_module is None:
        import lm_eval.tasks.manager as manager_module
    task_manager = manager_module.TaskManager
    if getattr(task_manager.__init__, "_finemed_wrapped", False):
        return
    original_init = task_manager.__init__
    signature = inspect.signature(original_init)

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.arguments["include_path"] = with_task_folder(bound.arguments.get("include_path"))
        original_init(*bound.args, **bound.kwargs)

    __init__._finemed_wrapped = True
    __init__.__wrapped__ = original_init
    task_manager.__init__ = __init__


def with_task_folder(include_path) -> list:
    """Our folder first, so a user's include_path can still override any finemed task."""
    ours = task_folder()
    if include_path is None:
        given = []
    elif isinstance(include_path, (list, tuple)):
        given = list(include_path)
    else:
        given = [include_path]
    if any(Path(p).resolve() == ours.resolve() for p in given):
        return given
    return [ours, *given]


def save_ttt_logs_with_results(tracker_module: ModuleType | None = None) -> None:
    """`--output_path` also gets each live finemed_ttt model's log, beside lm-eval's results file."""
    if tracker_module is None:
        import lm_eval.loggers.evaluation_tracker as tracker_module
    tracker = tracker_module.EvaluationTracker
    if getattr(tracker.save_results_aggregated, "_finemed_wrapped", False):
        return
    original = tracker.save_results_aggregated

    def save_results_aggregated(self, results, samples=None):
        original(self, results, samples)
        if not self.output_path or "finemed_eval.ttt.log" not in sys.modules:
            return  # no finemed_ttt model was ever built in this process
        from finemed_eval.ttt.log import write_beside_results

        path = Path(self.output_path)
        folder = path.parent if path.suffix == ".json" else path / str(self.general_config_tracker.model_name_sanitized)
        write_beside_results(folder, self.date_id, set(results.get("results", {})) | set(samples or {}))

    save_results_aggregated._finemed_wrapped = True
    save_results_aggregated.__wrapped__ = original
    tracker.save_results_aggregated = save_results_aggregated
