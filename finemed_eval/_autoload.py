"""Start-up hook (imported from a .pth file): teaches the stock lm-eval about finemed-eval.

lm-eval 0.4.13 has no plugin discovery, so we wait for two of its modules to be imported and then
run finemed_eval.plugin on them. Processes that never import lm-eval pay for this file only
(stdlib `sys` and no other import). FINEMED_EVAL_NO_AUTOLOAD=1 switches it off.
"""

import os
import sys

# lm-eval module -> plugin function run right after that module has executed.
_HOOKS = {
    "lm_eval.models": "register_model",
    "lm_eval.tasks.manager": "add_task_folder",
    "lm_eval.loggers.evaluation_tracker": "save_ttt_logs_with_results",
}


class _LoaderAfterHook:
    """Wraps a module loader so the plugin hook runs once the module body has executed."""

    def __init__(self, loader, hook_name):
        self._loader = loader
        self._hook_name = hook_name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _run_hook(self._hook_name, module)

    def __getattr__(self, name):  # get_code, get_source, is_package, ... as the real loader has them
        return getattr(self._loader, name)


class _LmEvalFinder:
    """A meta-path finder that only answers for the modules in _HOOKS, by asking the others."""

    def find_spec(self, fullname, path=None, target=None):
        hook_name = _HOOKS.get(fullname)
        if hook_name is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _LoaderAfterHook(spec.loader, hook_name)
                return spec
        return None


def _run_hook(hook_name, module):
    from finemed_eval import plugin

    getattr(plugin, hook_name)(module)


def install():
    if any(isinstance(f, _LmEvalFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _LmEvalFinder())
    for name, hook_name in _HOOKS.items():  # imported before we were (e.g. python -S then site)
        if name in sys.modules:
            _run_hook(hook_name, sys.modules[name])


if os.environ.get("FINEMED_EVAL_NO_AUTOLOAD") != "1":
    install()
