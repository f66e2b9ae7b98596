"""meson.build installs every module of the package (its source list is written by hand)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_meson_installs_every_python_file_of_the_package():
    listed = set(re.findall(r"'(cfsx/[^']+)'", (ROOT / "meson.build").read_text()))
    present = {str(path.relative_to(ROOT)) for path in (ROOT / "cfsx").glob("*.py")}
    present |= {str(path.relative_to(ROOT)) for path in (ROOT / "cfsx").glob("*.json")}
    assert present - listed == set(), "not installed by meson.build"
    assert {name for name in listed if name.startswith("cfsx/") and "." in Path(name).name} - present == set()
