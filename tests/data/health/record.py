"""A notify hook for the tests: appends its arguments, one call per line, to the file given first."""

import sys

with open(sys.argv[1], "a") as f:
    f.write(" ".join(sys.argv[2:]) + "\n")
