"""``python -m medloss`` is the ``medloss`` command."""

import sys

from .cli import main

sys.exit(main())
