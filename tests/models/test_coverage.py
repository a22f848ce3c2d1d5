"""Every registered model has a test class that inherits the conformance suite."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from attnrec.models.base import available_models
from attnrec.testing import ConformanceTests


def _conformance_classes() -> list[type[ConformanceTests]]:
    """The ConformanceTests subclasses of every test module under tests/models (imported here by path, so the
    check holds whichever test files a run selects)."""
    found = []
    for path in sorted(Path(__file__).parent.rglob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"_coverage_{path.stem}_{abs(hash(path))}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found += [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, ConformanceTests) and obj is not ConformanceTests
        ]
    return found


def test_every_registered_model_passes_the_conformance_suite():
    covered = {cls.model_class for cls in _conformance_classes()}
    missing = [name for name, cls in available_models().items() if cls not in covered]
    assert not missing, f"registered models without a ConformanceTests class under tests/models: {missing}"
