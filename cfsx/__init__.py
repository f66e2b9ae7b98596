"""cfsx: interpret X-ray diffuse scattering with CNNs trained on Monte Carlo simulations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cfsx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
