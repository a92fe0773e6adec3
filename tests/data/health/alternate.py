"""A MISC check for the tests: a flapping server, up and down on alternate calls (a counter in the file given)."""

import sys
from pathlib import Path

path = Path(sys.argv[1])
n = int(path.read_text()) if path.exists() else 0
path.write_text(str(n + 1))
sys.exit(n % 2)
