"""PEP 517 backend: setuptools, plus one .pth file added to every wheel (regular and editable).

The .pth line runs at interpreter start-up and only installs a tiny import hook
(finemed_eval._autoload); lm-eval itself is untouched until a program imports it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (re-export the full PEP 517/660 interface)

PTH_NAME = "finemed_eval_lm_eval_plugin.pth"
# Guarded: an install whose source folder was deleted (a stale editable install) must not print a
# traceback at every interpreter start-up; without the package the line does nothing.
PTH_TEXT = b'import importlib.util; importlib.util.find_spec("finemed_eval") and __import__("finemed_eval._autoload")\n'


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    _add_pth(Path(wheel_directory) / name)
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    _add_pth(Path(wheel_directory) / name)
    return name


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def _add_pth(wheel: Path) -> None:
    """Rewrite the wheel with the .pth at its root and a matching RECORD line."""
    rewritten = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        for item in src.infolist():
            data = src.read(item)
            if item.filename == record_name:
                data += _record_line(PTH_NAME, PTH_TEXT).encode()
            dst.writestr(item, data)
        dst.writestr(PTH_NAME, PTH_TEXT)
    os.replace(rewritten, wheel)
