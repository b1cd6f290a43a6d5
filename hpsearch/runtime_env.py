"""What ships the project to a Ray cluster: the ``runtime_env`` of a sweep driver or a submitted job.

A leaf module: it imports nothing of the service, so the sweep (joining a cluster) and the cluster
submitter (submitting a job) can both use it without importing each other.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

PACKAGES = ("hpsearch", "trainables", "search_spaces")
EXCLUDES = [".git", "results/", "bench/data/", ".venv/", "__pycache__/", "*.egg-info/", ".pytest_cache/",
            "*.pt", "*.parquet"]
"""Never uploaded with the project: sweep outputs, checkpoints and local environments."""


def project_root() -> Path:
    """The directory holding hpsearch/, trainables/ and search_spaces/ (the editable checkout)."""
    return Path(__file__).resolve().parent.parent


def project_runtime_env(env: dict[str, str] | None = None) -> dict:
    """runtime_env shipping the project: the checkout as working_dir, else the three packages."""
    root = project_root()
    env_vars = {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **(env or {})}
    if all((root / p / "__init__.py").is_file() for p in PACKAGES):
        return {"working_dir": str(root), "excludes": list(EXCLUDES), "env_vars": env_vars}
    # installed from a wheel: ship the packages themselves (the driver finds them on sys.path)
    modules = [str(Path(importlib.import_module(p).__file__).parent) for p in PACKAGES]
    return {"py_modules": modules, "excludes": list(EXCLUDES), "env_vars": env_vars}


def driver_runtime_env() -> dict | None:
    """runtime_env for a sweep driver joining a running cluster (``ray.init(address=..., runtime_env=...)``).

    Ships the project so trials on every node run the driver's code, not whatever version a node
    has installed (or none). None inside a submitted job: the job already ships it.
    """
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):  # set by Ray's job supervisor for the entrypoint
        return None
    return project_runtime_env()
