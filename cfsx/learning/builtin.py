"""The built-in general models that ship with cfsx: their names, files and model cards.

``cfsx/learning/builtin/models.json`` (written by ``make models``, benchmarks/build_models.py) lists each
model: its file beside it, the sha256 of that file, the recipe it was built from (a hash of the
configs that made its data and its training) and its figures on the generalisation benchmark. A
model is named wherever a model file is accepted (``interpret --model``, ``evaluate``, ``train
--init``, ``info``); a path to a .keras file always works too. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfsx.errors import DataError

BUILTIN_DIR = Path(__file__).parent / "builtin"
REGISTRY = BUILTIN_DIR / "models.json"
DEFAULT_MODEL = "general-cfs4"  # what interpret uses when no model is given


@dataclass(frozen=True)
class BuiltinModel:
    """One entry of the registry (its model card in short)."""

    name: str
    file: str
    sha256: str
    cfs: int
    architecture: str
    recipe: str  # sha256 of the configs the model was built from: make models skips an unchanged recipe
    trained_on: str
    benchmark: dict[str, Any] = field(default_factory=dict)
    check_mae: float | None = None  # MAE on the fixed check sample (CHECK_CONFIG): tests/test_builtin.py

    @property
    def path(self) -> Path:
        return BUILTIN_DIR / self.file


def builtin_models(directory: Path = BUILTIN_DIR) -> list[BuiltinModel]:
    """Every model of the registry (none when cfsx was installed without them)."""
    registry = directory / REGISTRY.name
    if not registry.is_file():
        return []
    try:
        entries = json.loads(registry.read_text())
        return [BuiltinModel(name=name, **entry) for name, entry in entries.items()]
    except (ValueError, TypeError) as error:
        raise DataError(f"the built-in model registry {registry} is damaged ({error}); reinstall cfsx") from None


def builtin_model(name: str, directory: Path = BUILTIN_DIR) -> BuiltinModel | None:
    """The registry entry of the built-in model ``name``, or None."""
    return next((model for model in builtin_models(directory) if model.name == name), None)


def resolve_model(name_or_path: str | Path) -> Path:
    """The model file of a path or of a built-in model's name (``general-cfs4``)."""
    path = Path(name_or_path)
    if path.suffix == ".keras" or path.exists() or len(path.parts) > 1:
        return path
    model = builtin_model(str(name_or_path))
    if model is None:
        names = ", ".join(model.name for model in builtin_models()) or "none are installed"
        raise DataError(f"no model file or built-in model named {name_or_path!r} (built-in models: {names})")
    if not model.path.is_file():
        raise DataError(f"the built-in model {model.name} is not installed ({model.path}); make models builds it")
    verify(model)
    return model.path


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256: each file hashed once per process


def verify(model: BuiltinModel) -> None:
    """Refuse a built-in model whose file is not the one its registry names (replaced or damaged): its sha256, kept
    per size and modification time so that naming a model stays fast."""
    status = model.path.stat()
    key = (str(model.path), status.st_size, status.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = file_sha256(model.path)
    if _VERIFIED[key] != model.sha256:
        raise DataError(
            f"the built-in model {model.name} ({model.path}) is not the file its registry names (sha256 "
            f"{_VERIFIED[key][:12]}..., expected {model.sha256[:12]}...): reinstall cfsx or make models"
        )


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register(model: BuiltinModel, directory: Path = BUILTIN_DIR) -> None:
    """Add or replace ``model`` in the registry of ``directory`` (make models: the source tree's folder)."""
    registry = directory / REGISTRY.name
    entries = json.loads(registry.read_text()) if registry.is_file() else {}
    entries[model.name] = {key: value for key, value in model.__dict__.items() if key != "name"}
    registry.write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")
