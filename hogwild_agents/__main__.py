"""``python -m hogwild_agents ...`` is the ``hogwild`` command (e.g. under ``torchrun``)."""

import sys

from .ui.cli import main

sys.exit(main())
