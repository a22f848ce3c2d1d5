"""Import a script that is not in a package (a file under ``benchmarks/``) as a module, for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: str | Path) -> ModuleType:
    """The module of script ``path``, named by its file stem and imported once (later calls return the same module).

    The script's folder goes on ``sys.path`` first, so that it imports its sibling scripts as it does when run."""
    path = Path(path).resolve()
    name = path.stem
    if name not in sys.modules:
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path}: not a Python script")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]  # a failed import must not leave a half-made module behind
            raise
    return sys.modules[name]
