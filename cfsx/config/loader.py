"""Configs from YAML files, built-in names and ``--set`` overrides, checked section by section, and back to
annotated YAML."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from cfsx.config.base import Sections
from cfsx.config.simulate import SimulationConfig
from cfsx.errors import ConfigError

BUILTIN_CONFIGS = Path(__file__).parents[1] / "configs"


def _section_classes(root: type) -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(root)}


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a built-in config (``demo``, ``cfs4``, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config {path} is a directory, not a YAML file")
    builtin = BUILTIN_CONFIGS / f"{Path(str(name_or_path)).stem}.yaml"
    if not path.suffix and builtin.is_file():
        return builtin
    available = ", ".join(sorted(p.stem for p in BUILTIN_CONFIGS.glob("*.yaml")))
    raise ConfigError(f"config not found: {name_or_path} (built-in configs: {available})")


def read_config_file(path: Path) -> tuple[str, dict[str, Any]]:
    """A config file's text and its sections, with one line for anything that is not a YAML mapping of sections
    (not text, not YAML, tags that build Python objects, too deep)."""
    try:
        text = path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config {path} is nested too deeply to be a cfsx config") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config {path} must be a mapping of sections")
    loaded = yaml_numbers(loaded or {})
    return text, {k: dict(v) if isinstance(v, dict) else v for k, v in loaded.items()}


EXPONENT_ONLY = re.compile(r"[-+]?\d+[eE][-+]?\d+")  # 1e308: YAML 1.1 reads it as text (it wants 1.0e308)


def yaml_numbers(value: Any) -> Any:
    """YAML values with numbers written as 1e308 (text to YAML 1.1) read as the numbers they are."""
    if isinstance(value, str) and EXPONENT_ONLY.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {key: yaml_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [yaml_numbers(item) for item in value]
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """'section.key=value' -> (['section', 'key'], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"override must look like section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override key must be section.key, got {key!r}")
    try:
        value = yaml_numbers(yaml.safe_load(raw))
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({yaml_problem(exc)})") from None
    except RecursionError:
        raise ConfigError(f"override {key!r}: the value is nested too deeply") from None
    return parts, value


def config_from_dict(data: dict[str, Any], root: type = SimulationConfig) -> Any:
    """Build and validate a config (``root``: SimulationConfig or TrainingConfig); unknown keys are errors.

    Every problem is reported at once, in one ConfigError: each unknown section or key, and each bad value
    with its key; the checks between sections run when every section is valid by itself.
    """
    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping of sections")
    section_classes = _section_classes(root)
    sections, problems = {}, []
    for section, values in data.items():
        if section not in section_classes:
            problems.append(f"unknown config section {section!r} (known: {', '.join(section_classes)})")
            continue
        values = {} if values is None else values
        if not isinstance(values, dict):
            problems.append(f"config section {section!r} must be a mapping")
            continue
        cls = section_classes[section]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known, key=str)
        problems += [f"unknown key {section}.{key} (known: {', '.join(sorted(known))})" for key in unknown]
        values = {key: value for key, value in values.items() if key in known}
        try:
            sections[section] = cls(**values)
        except (ConfigError, TypeError):
            problems += _section_problems(cls, section, values)
    if not problems:
        try:
            return root(**sections)
        except ConfigError as error:
            problems.append(str(error))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    raise ConfigError(f"{len(problems)} problems in the config: " + "; ".join(problems))


def _section_problems(cls: type, section: str, values: dict[str, Any]) -> list[str]:
    """Why a section is invalid: the first problem of the values together, then each other value that is wrong by
    itself (tried alone over the defaults; a problem of a value alone names its key, so a rule about two keys, met
    together, is not reported against one of them alone)."""
    found = []
    try:
        cls(**values)
    except ConfigError as error:
        found.append(str(error))
    except TypeError:
        pass  # a key the section does not have: named below
    for key, value in values.items():
        try:
            cls(**{key: value})
        except ConfigError as error:
            if f"{section}.{key}" in str(error) and str(error) not in found:
                found.append(str(error))
        except TypeError:
            found.append(f"{section}.{key}: {value!r} is not a value it can take")
    return found


def load_config(
    source: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    root: type = SimulationConfig,
    **flags: Any,
) -> Any:
    """Load a YAML config (path or built-in name), apply ``--set`` overrides, then flags.

    ``flags`` are dotted keys with values, for example ``{"run.samples": 100}``; None is ignored.
    ``root`` is the config class: SimulationConfig (simulate) or TrainingConfig (train, evaluate).
    """
    data: dict[str, Any] = {}
    if source is not None:
        data = read_config_file(resolve_config_path(source))[1]
    updates = [parse_override(text) for text in overrides]
    for key in flags:
        if len(str(key).split(".")) != 2:
            raise ConfigError(f"a config value is named section.key, such as run.samples: got {key!r}")
    updates += [(key.split("."), value) for key, value in flags.items() if value is not None]
    for (section, key), value in updates:
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config section {section!r} must be a mapping")
        target[key] = value
    try:
        return config_from_dict(data, root)
    except TypeError as exc:  # a value of a type the dataclass cannot take
        raise ConfigError(f"invalid config: {exc}") from None


def config_from_yaml_text(text: str) -> SimulationConfig:
    """The config stored inside a dataset or model."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the stored simulation config is not valid YAML: {yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError("the stored simulation config is nested too deeply") from None
    return config_from_dict(data)


def yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong in a YAML text and where: 'line L, column C: problem'."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or error.__class__.__name__
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + problem + (f" ({context})" if context else "")


def annotated_yaml(config: Sections, source_text: str = "", changed: Iterable[str] = ()) -> str:
    """The resolved ``config`` as YAML with the comments of the file it came from (``source_text``).

    Keys the file does not set show their defaults; ``changed`` ("section.key") are marked as set on
    the command line."""
    comments = _yaml_comments(source_text)
    changed = set(changed)
    lines = list(comments.get(("", ""), ([], ""))[0])
    for section, values in config.to_dict().items():
        above, inline = comments.get((section, ""), ([], ""))
        lines += [*above, f"{section}:" + (f"  {inline}" if inline else "")]
        for key, value in values.items():
            above, inline = comments.get((section, key), ([], ""))
            if f"{section}.{key}" in changed:
                inline = "# set on the command line" + (f" (file: {inline.lstrip('# ')})" if inline else "")
            text = yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]  # flow style, one line
            lines += [f"  {line}" for line in above]
            lines.append(f"  {key}: {text}" + (f"  {inline}" if inline else ""))
    return "\n".join(lines) + "\n"


def _yaml_comments(text: str) -> dict[tuple[str, str], tuple[list[str], str]]:
    """(section, key) -> (the comment lines above it, its end-of-line comment); ("", "") is the file's header."""
    comments: dict[tuple[str, str], tuple[list[str], str]] = {}
    pending: list[str] = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped)
            continue
        match = re.match(r"^(\s*)([A-Za-z_][\w-]*):(.*?)(?:\s+(#.*))?$", line)
        if not match:
            continue
        indent, name, _, inline = match.groups()
        if not indent:
            if not section and pending and ("", "") not in comments:
                comments[("", "")] = (pending, "")
                pending = []
            section = name
            comments[(section, "")] = (pending, inline or "")
        else:
            comments[(section, name)] = (pending, inline or "")
        pending = []
    return comments
