"""`python -m ftengine ...` entry point."""

import sys

from ftengine.cli import main

if __name__ == "__main__":
    sys.exit(main())
