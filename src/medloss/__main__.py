"""``python -m medloss`` is the ``medloss`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # importing the module (documentation tools do) runs nothing
    sys.exit(main())
