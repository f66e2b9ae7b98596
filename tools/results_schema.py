"""cfsx/interpretation/results.schema.json from the records: the fields results.json lays out by hand keep the
schema written for them in the file; every other field of ``Interpretation`` gets the schema of its type
(cfsx.interpretation.results.results_schema).

``python tools/results_schema.py`` rewrites the file; ``--check`` exits 1 when it is out of date (tests run it), so
a new field of the record is described without anyone writing its schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cfsx.interpretation.results import results_schema

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "cfsx" / "interpretation" / "results.schema.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date, change nothing")
    args = parser.parse_args()
    text = json.dumps(results_schema(json.loads(SCHEMA_PATH.read_text())), indent=1) + "\n"
    if args.check:
        if SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is out of date: run python tools/results_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
