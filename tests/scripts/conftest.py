"""scripts/ is no package: its scripts import their shared helpers (bench_common) from beside them,
as `python scripts/x.py` does; the tests load them by path, with scripts/ first on sys.path."""
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))


def _load(name: str):
    """scripts/<name>.py as a module (registered, so its dataclasses find their module)."""
    spec = importlib.util.spec_from_file_location(f"nmt_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """load_script("benchmark") -> the module of scripts/benchmark.py."""
    return _load
