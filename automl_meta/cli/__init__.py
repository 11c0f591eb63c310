"""The ``automl-meta`` command line: parses arguments, calls the library, prints.

One module per command group, each registering its commands on the typer :data:`app` of
:mod:`automl_meta.cli.entry` (which also holds :func:`main`, the console-script entry
point, and the exit-code mapping):

- :mod:`~automl_meta.cli.fit`: ``fit``
- :mod:`~automl_meta.cli.use`: ``predict``, ``evaluate``, ``report``
- :mod:`~automl_meta.cli.worker`: ``worker``
- :mod:`~automl_meta.cli.metabase`: ``metafeatures``, ``neighbors``, ``build-metabase``,
  ``metabase info`` and ``metabase export``
- :mod:`~automl_meta.cli.history`: ``history list``, ``show``, ``forget`` and ``export``

The command modules are imported in the order ``automl-meta --help`` lists the commands.
"""

from automl_meta.cli.entry import STORAGE_ENV, GateFailed, StdoutClosed, app, main

# isort: off
from automl_meta.cli import fit as _fit  # noqa: F401  (registers its command on app)
from automl_meta.cli import use as _use  # noqa: F401
from automl_meta.cli import worker as _worker  # noqa: F401
from automl_meta.cli import metabase as _metabase  # noqa: F401
from automl_meta.cli import history as _history  # noqa: F401
# isort: on

__all__ = ["STORAGE_ENV", "GateFailed", "StdoutClosed", "app", "main"]
