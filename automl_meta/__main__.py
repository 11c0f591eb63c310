"""``python -m automl_meta`` runs the command line."""

import sys

from automl_meta.cli import main

sys.exit(main())
