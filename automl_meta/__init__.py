"""automl-meta: AutoML for tabular data, warm-started from similar prior tasks."""

__version__ = "0.1.0"

from .automl import AutoML  # noqa: E402

__all__ = ["AutoML", "__version__"]
