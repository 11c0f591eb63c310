"""The package version: one home, read by ``pyproject.toml`` and by every module that
records it (run-directory manifests, metabase provenance)."""

__version__ = "0.2.0"
