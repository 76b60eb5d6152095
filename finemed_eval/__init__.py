"""finemed-eval: lm-eval plugin, benchmark tasks and test-time training for medical reasoning LLMs.

Kept import-free on purpose: a .pth file imports `finemed_eval._autoload` in every Python process.
"""

__version__ = "0.1.0"
