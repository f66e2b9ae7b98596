"""``cfsx models``, ``cfsx info`` and ``cfsx config``: commands that describe what is there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cfsx.app.cli.common import (
    JsonFlag,
    SetOverrides,
    app,
    console,
    examples,
    print_json,
    reported_errors,
    result_console,
)


@app.command(epilog=examples(["cfsx models", "cfsx models --json"]))
def models(json_: JsonFlag = False) -> None:
    """List the built-in models: what they were trained on and how they score on the generalisation benchmark."""
    with reported_errors():
        from cfsx.learning.builtin import DEFAULT_MODEL, builtin_models

        found = builtin_models()
        if json_:
            print_json([{**vars(model), "path": model.path, "installed": model.path.is_file()} for model in found])
        if not found:
            console.print("no built-in models are installed (make models builds them)")
            return
        table = Table(title="built-in models (docs/models.md: their model card)")
        for column in ("name", "CFS", "architecture", "trained on", "benchmark", "sha256"):
            table.add_column(column)
        for model in found:
            figures = ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                                for key, value in model.benchmark.items())  # fmt: skip
            name = model.name + (" (default)" if model.name == DEFAULT_MODEL else "")
            name += "" if model.path.is_file() else " [not installed]"
            table.add_row(name, str(model.cfs), model.architecture, model.trained_on, figures or "-", model.sha256[:12])
        result_console(json_).print(table)


@app.command(epilog=examples(["cfsx info cfs4.h5", "cfsx info cfs4.keras", "cfsx info general-cfs4"]))
def info(
    path: Annotated[
        Path, typer.Argument(help="A cfsx dataset (.h5), model (.keras) or built-in model's name (cfsx models).")
    ],
    json_: JsonFlag = False,
) -> None:
    """Describe a dataset (size, settings, label statistics, how well the targets were reached) or a model
    (encoding, grid, training data and run, hold-out metrics)."""
    with reported_errors():
        from cfsx.io.dataset_info import describe
        from cfsx.learning.builtin import builtin_model

        out = result_console(json_)
        if path.suffix.lower() == ".keras" or (not path.exists() and builtin_model(str(path)) is not None):
            metadata = _describe_model(path, out)
            if json_:
                print_json({key: value for key, value in metadata.items() if key != "split"})
            return
        details = describe(path)
        if json_:
            print_json(details)
        out.print(details.summary(), highlight=False, markup=False)


def _describe_model(path: Path, out: Console) -> dict:
    """cfsx info on a .keras model: its metadata, read without loading the weights; returns the metadata."""
    from cfsx.learning.model_card import check_model_archive, read_model_card

    card = read_model_card(path)
    check_model_archive(path)  # the weights too: a model with damaged weights is not fine
    out.print(card.summary(), highlight=False, markup=False)
    return card.metadata


config_app = typer.Typer(help="Show the built-in configs and what a config resolves to.", no_args_is_help=True)

app.add_typer(config_app, name="config")


CONFIG_KINDS = ("simulate", "train", "correct", "interpret")


def _config_root(kind: str):
    from cfsx.config import CorrectionConfig, InterpretationConfig, SimulationConfig, TrainingConfig

    roots = (SimulationConfig, TrainingConfig, CorrectionConfig, InterpretationConfig)
    return dict(zip(CONFIG_KINDS, roots, strict=True))[kind]


@config_app.command(
    "show",
    epilog=examples(
        ["cfsx config show cfs4", "cfsx config show cfs4 --set lattice.size=64", "cfsx config show my.yaml"]
    ),
)
def config_show(
    name: Annotated[str, typer.Argument(help="A built-in config's name or a YAML file.")],
    set_: SetOverrides = None,
    kind: Annotated[
        str | None, typer.Option(help="simulate, train, correct or interpret (default: from the file's sections).")
    ] = None,
) -> None:
    """Print a config as the commands resolve it (defaults filled in, --set applied), with its comments."""
    with reported_errors():
        from cfsx.config import annotated_yaml, load_config, resolve_config_path
        from cfsx.config.loader import read_config_file
        from cfsx.errors import ConfigError

        if kind is not None and kind not in CONFIG_KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(CONFIG_KINDS)}, got {kind!r}")
        path = resolve_config_path(name)
        text, document = read_config_file(path)
        sections = set(document) if kind is None else set()
        kinds = [kind] if kind else [k for k in CONFIG_KINDS if sections <= set(_section_names(_config_root(k)))]
        if not kinds:
            raise ConfigError(f"{path}: its sections {sorted(sections)} are not those of any cfsx config")
        resolved = load_config(path, set_ or (), root=_config_root(kinds[0]))
        changed = [text.split("=", 1)[0].strip() for text in set_ or ()]
        sys.stdout.write(f"# {path} ({kinds[0]} config)\n" + annotated_yaml(resolved, text, changed))


def _section_names(root) -> list[str]:
    import dataclasses

    return [field.name for field in dataclasses.fields(root)]
