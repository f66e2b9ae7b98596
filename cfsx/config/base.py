"""What every config section shares: the checks a section's ``__post_init__`` makes and the base of a whole config."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import yaml

from cfsx.errors import ConfigError

MAX_INDEX = 1e4  # r.l.u.: a larger h_max, centre or plane index is a typo


def require(condition: bool, message: str) -> None:
    """Refuse a config value: ``message`` (naming the key and what it must be) when ``condition`` is false."""
    if not condition:
        raise ConfigError(message)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (YAML's true is not 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


class Sections:
    """Base of a whole config, a dataclass of section dataclasses: serialises to the YAML it is read from."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
