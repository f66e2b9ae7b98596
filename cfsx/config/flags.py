"""The options with a flag of their own (the CLI's ``--origin``, ``--refine``, ... and the server's form fields of the
same names) and the config keys they set: the one mapping both use.

Layering: dataclass defaults < YAML file < ``--set section.key=value`` < these options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cfsx.config.correct import CENTRINGS, ZONE_RULES, CorrectionConfig
from cfsx.config.interpret import InterpretationConfig
from cfsx.config.loader import load_config
from cfsx.errors import ConfigError


@dataclass(frozen=True)
class Calibration:
    """Where h, k fall on an image and which window to take, as the options' text gives them (None: the config's)."""

    origin: str | None = None  # ROW,COLUMN: the pixel of h = k = 0
    pixels_per_rlu: str | None = None  # ROWS,COLUMNS
    rotation: float | None = None  # degrees
    centre: str | None = None  # H=-2,L=4 (by the file's axis names) or ROW,COL (r.l.u.)
    zones: str | None = None  # all or centre
    lattice: str | None = None  # a centring: P, C, F, ...

    def overrides(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        """The correction config keys these options set; a refusal names each option as ``names`` (config key ->
        the command line's flag, say) has it, else by the field's own name (the server's form)."""
        names = names or {}

        def name(field: str) -> str:
            return names.get(f"geometry.{field}", field)

        if self.zones not in (None, *ZONE_RULES):
            raise ConfigError(f"{name('zones')} must be all or centre, got {self.zones!r}")
        if self.lattice not in (None, *CENTRINGS):
            raise ConfigError(f"{name('lattice')} must be one of {', '.join(CENTRINGS)}, got {self.lattice!r}")
        return {
            "geometry.origin": _pair(self.origin, name("origin"), "ROW,COLUMN"),
            "geometry.pixels_per_rlu": _pair(self.pixels_per_rlu, name("pixels_per_rlu"), "ROWS,COLUMNS"),
            "geometry.rotation": self.rotation,
            "geometry.centre": _centre(self.centre, name("centre")),
            "geometry.zones": self.zones,
            "geometry.lattice": self.lattice,
        }


def correction_config(
    config: str,
    overrides: list[str] | None = None,
    calibration: Calibration | None = None,
    mask: str | None = None,
    names: dict[str, str] | None = None,
) -> CorrectionConfig:
    """The correction config ``config`` (a name or file) with ``--set`` ``overrides``, then the calibration options
    and the mask file applied over them (``names``: Calibration.overrides)."""
    flags = {**(calibration or Calibration()).overrides(names), "mask.file": mask}
    return load_config(config, overrides or (), root=CorrectionConfig, **flags)


def interpretation_config(
    config: str | None = "interpret",
    overrides: list[str] | None = None,
    *,
    refine: bool | None = None,
    replicates: int | None = None,
    figures: bool | None = None,
) -> InterpretationConfig:
    """The interpretation config ``config`` with ``--set`` ``overrides``, then the options (None: the config's)."""
    flags = {"refine.enabled": refine, "decode.replicates": replicates, "output.figures": figures}
    return load_config(config, overrides or (), root=InterpretationConfig, **flags)


def _pair(text: str | None, name: str, form: str = "A,B") -> list[float] | None:
    if text is None:
        return None
    try:
        first, second = (float(part) for part in str(text).split(","))
    except ValueError:
        raise ConfigError(f"{name} must be two numbers: {form} (got {str(text)[:40]!r})") from None
    return [first, second]


def _centre(text: str | None, name: str) -> list[float] | dict[str, float] | None:
    """A centre ROW,COL or by the file's axis names, H=-2,L=4 (a reciprocal lattice point either way)."""
    if text is None or "=" not in text:
        return _pair(text, name, "ROW,COL")
    named = {}
    for part in text.split(","):
        axis, _, value = part.partition("=")
        try:
            named[axis.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be ROW,COL or NAME=VALUE,NAME=VALUE such as H=-2,L=4 (got "
                              f"{text[:40]!r})") from None  # fmt: skip
    if len(named) != 2 or not all(named):
        raise ConfigError(f"{name} must name two axes, such as H=-2,L=4 (got {text[:40]!r})")
    return named
