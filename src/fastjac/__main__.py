"""``python -m fastjac``: the same as the ``fastjac`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
