"""sciml: PINNs for singular ODEs and probabilistic forecasting on the sphere.

Importing this package has no side effects: no backend is selected, no dtype or thread count is changed.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sciml")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
