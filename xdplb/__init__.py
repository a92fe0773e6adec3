"""xdplb: an XDP layer-4 load balancer with a Python control plane."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xdplb")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0"
