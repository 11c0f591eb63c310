"""Where the shipped search space and the bundled metabase live.

In a source checkout they are the top-level ``configs/`` and ``metabase/`` folders; in an
installed wheel they are ``automl_meta/_configs`` and ``automl_meta/_metabase`` (see
``pyproject.toml``).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0]


def configs_dir() -> Path:
    """Folder holding ``space.yaml``."""
    return _first_existing(_PACKAGE / "_configs", _PACKAGE.parent / "configs")


def flows_dir() -> Path:
    """Folder of the OpenML flow mappings (``<flow id>.yaml``, see
    :mod:`automl_meta.meta.builder.sources.openml_runs`)."""
    return configs_dir() / "flows"


def default_space_path() -> Path:
    """Path of the shipped search space."""
    return configs_dir() / "space.yaml"


def bundled_metabase_dir() -> Path:
    """Folder of the bundled metabase."""
    return _first_existing(_PACKAGE / "_metabase", _PACKAGE.parent / "metabase")
