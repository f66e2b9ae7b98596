"""docs/api.md from the docstrings of cfsx's public Python names (``cfsx.__all__``), as Markdown.

``python tools/api_docs.py`` rewrites docs/api.md; ``--check`` exits 1 when docs/api.md is out of date
(tests/test_api.py runs it), so the page cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
INTRO = """# Python API

Generated from the docstrings by `python tools/api_docs.py` (tests/test_api.py fails when this page is out of
date). Every name is imported on first use: `import cfsx` loads neither TensorFlow nor a matplotlib backend.
"""


def _entry(name: str, value: object) -> str:
    if inspect.ismodule(value):
        functions = [
            (member, getattr(value, member))
            for member in sorted(vars(value))
            if not member.startswith("_")
            and inspect.isfunction(getattr(value, member))
            and getattr(value, member).__module__ == value.__name__
        ]
        lines = [f"## `cfsx.{name}`", "", inspect.getdoc(value) or ""]
        for member, function in functions:
            heading = f"### `cfsx.{name}.{member}{inspect.signature(function)}`"
            lines += ["", heading, "", inspect.getdoc(function) or ""]
        return "\n".join(lines)
    if inspect.isclass(value) and dataclasses.is_dataclass(value):
        fields = ", ".join(field.name for field in dataclasses.fields(value))
        return f"## `cfsx.{name}` (dataclass: {fields})\n\n{inspect.getdoc(value) or ''}"
    signature = inspect.signature(value) if callable(value) else ""
    return f"## `cfsx.{name}{signature}`\n\n{inspect.getdoc(value) or ''}"


def render() -> str:
    import cfsx

    names = [name for name in cfsx.__all__ if name != "__version__"]
    return INTRO + "\n" + "\n\n".join(_entry(name, getattr(cfsx, name)) for name in names) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/api.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DOCS.exists() or DOCS.read_text() != text:
            print(f"{DOCS} is out of date: run python tools/api_docs.py", file=sys.stderr)
            return 1
        return 0
    DOCS.write_text(text)
    print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
