"""A MISC check for the tests: exits with the number written in the file given (0 when it is missing)."""

import sys
from pathlib import Path

path = Path(sys.argv[1])
sys.exit(int(path.read_text()) if path.exists() else 0)
