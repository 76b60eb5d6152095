"""finemed-eval's lm-eval task folder (installed as finemed_eval.tasks).

One folder per benchmark, each a few YAML files over the shared templates in `_templates/`.
lm-eval reads these files from disk; finemed_eval.plugin adds this folder to every TaskManager.
"""
