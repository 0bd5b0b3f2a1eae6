"""``python -m sklearn_backdoor``: the ``sklearn-backdoor`` command line."""

import sys

from sklearn_backdoor.cli import main

if __name__ == "__main__":
    sys.exit(main())
