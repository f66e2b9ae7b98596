"""The ``cfsx`` command line: parse, call one library function, print.

One module per group of commands; importing them registers the commands on ``app`` in the order of the data flow,
which is the order ``cfsx --help`` lists them in (hence no sorting of these imports).
"""

# isort: skip_file
from cfsx.app.cli.common import app
from cfsx.app.cli import datasets, describe, learn, correct, interpret, serve  # noqa: F401

__all__ = ["app"]
