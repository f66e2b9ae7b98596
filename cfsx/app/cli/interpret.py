"""``cfsx interpret`` and how its answer is printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cfsx.app.cli.common import (
    DEFAULT_WORKERS,
    FLAGS,
    JsonFlag,
    SetOverrides,
    app,
    console,
    examples,
    fail,
    print_json,
    progress_bar,
    renamed,
    reported_errors,
    result_console,
)
from cfsx.app.cli.correct import (
    Centre,
    Frames,
    Lattice,
    MaskFile,
    Origin,
    PixelsPerRlu,
    Plane,
    Rotation,
    SumFrames,
    Zones,
)
from cfsx.errors import (
    EXIT_NOT_EXPLAINED,
    EXIT_USAGE,
)


@app.command(
    epilog=examples(
        [
            "cfsx interpret plane.tif -o plane/ --origin 1024,980 --pixels-per-rlu 160,160",
            "cfsx interpret corrected.h5 -o batch/ --model general-cfs2 --replicates 0 --no-figures",
            "cfsx interpret corrected.h5 -o mine/ --model my.keras",
        ]
    )
)
def interpret(
    images: Annotated[
        list[str],
        typer.Argument(help="Raw images (as for cfsx correct) or .h5 files of cfsx correct or simulate; dirs, globs."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory: results.json, results.h5, figures.")],
    model: Annotated[
        str | None,
        typer.Option(help="A built-in model's name (cfsx models) or a .keras file (default: general-cfs4)."),
    ] = None,
    config: Annotated[str, typer.Option(help="Interpretation config: a YAML file or a built-in name.")] = "interpret",
    refine: Annotated[
        bool | None, typer.Option("--refine/--no-refine", help="Refine each encoding against its image.")
    ] = None,
    replicates: Annotated[
        int | None, typer.Option(help="Decoded structures per image (decode.replicates); 0: the CNN only.")
    ] = None,
    figures: Annotated[
        Path | None,
        typer.Option("--figures", help="Directory for the figures, one per image (default: OUTPUT/figures)."),
    ] = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Write no figures (output.figures: false).")] = False,
    record: Annotated[
        Path | None, typer.Option(help="Knowledge store (.h5) to append the interpreted images to.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Processes for decoding " + DEFAULT_WORKERS),
    ] = None,
    correct_config: Annotated[
        str | None, typer.Option("--correct-config", help="Correction config for raw images (default: correct).")
    ] = None,
    correction: Annotated[
        str | None, typer.Option("--correction", hidden=True, help="Old spelling of --correct-config.")
    ] = None,
    mask: MaskFile = None,
    frames: Frames = None,
    sum_frames: SumFrames = False,
    plane: Plane = None,
    origin: Origin = None,
    pixels_per_rlu: PixelsPerRlu = None,
    rotation: Rotation = None,
    centre: Centre = None,
    zones: Zones = None,
    lattice: Lattice = None,
    set_: SetOverrides = None,
    correct_set: Annotated[
        list[str] | None, typer.Option("--correct-set", help="Override a correction config value (repeatable).")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 7 when any image is not explained (results still written).")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Interpret images: encoding, decoded structure and image, fit quality, verdict, uncertainty, refinement."""
    with reported_errors():
        from cfsx.config.flags import Calibration, correction_config, interpretation_config
        from cfsx.interpretation import InterpretationOutput
        from cfsx.interpretation import interpret as run_interpretation
        from cfsx.io.cpus import worker_count
        from cfsx.io.readers import expand_inputs, select_frames, select_plane
        from cfsx.learning.builtin import DEFAULT_MODEL

        if figures is not None and no_figures:
            raise fail("--figures DIR and --no-figures contradict each other: give one of them", EXIT_USAGE)
        if images[0].endswith(".keras") and len(images) > 1:  # the old form: cfsx interpret MODEL IMAGES...
            model = renamed("a first argument MODEL.keras", images[0], "--model", model)
            images = images[1:]
        images = select_frames(expand_inputs(images), frames, sum_frames)
        images = select_plane(images, plane)

        resolved = interpretation_config(config, set_, refine=refine, replicates=replicates,
                                         figures=False if no_figures else None)  # fmt: skip
        correction_name = renamed("--correction", correction, "--correct-config", correct_config) or "correct"
        calibration = Calibration(origin, pixels_per_rlu, rotation, centre, zones, lattice)
        cleaning = correction_config(correction_name, correct_set, calibration, mask, FLAGS)
        processes = worker_count(workers)
        with progress_bar() as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total, rate="")
                bar.update(tasks[stage], completed=done, total=total)

            destination = InterpretationOutput(output, record, figures)
            result = run_interpretation(model or DEFAULT_MODEL, images, destination, resolved, cleaning,
                                        workers=processes, progress=progress)  # fmt: skip
        _print_interpretation(result.interpretations, result_console(json_))
        console.print(f"results: {result.output_dir / 'results.json'} ({result.seconds['total']:.1f} s)", markup=False)
        if record is not None:
            skipped = result.document.get("store_skipped", 0)
            console.print(f"recorded into {record} (now {result.document['store_size']} images"
                          + (f"; {skipped} not explained left out)" if skipped else ")"))  # fmt: skip
        if json_:
            print_json(result.document)
        from cfsx.interpretation.fit_quality import NOT_EXPLAINED

        if strict and any(item.verdict and item.verdict.label == NOT_EXPLAINED for item in result.interpretations):
            raise fail("--strict: some images are not explained (their verdicts above)", EXIT_NOT_EXPLAINED)


def _print_interpretation(interpretations, out: Console) -> None:
    """The table of the images (final answer, verdict, fit of every estimate's model image, ceilings), a warning
    line for each image not fully explained, and the first image's encoding with its verdict."""
    from cfsx.interpretation.estimates import FINAL_RULE
    from cfsx.interpretation.fit_quality import EXPLAINED, NOT_EXPLAINED
    from cfsx.io.readers import short_name

    first = interpretations[0]
    methods = list(first.estimates)
    kind = "structure" if first.decoded is not None else "analytic"
    table = Table(title=f"CFS{first.provenance.model.cfs} interpretation: R1 / R2 of each estimate's {kind} image "
                  "on the measured cells")  # fmt: skip
    columns = ["image", "verdict", "final answer", *methods, "ceiling: range / periodic"]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right", overflow="fold")
    for item in interpretations[:20]:
        row = [escape(short_name(item.source)), _verdict_text(item.verdict), item.final_source.replace("_", " ")]
        for name in methods:
            fit = (item.fits or {}).get(name)
            quality = None if fit is None else (fit.structure or fit.analytic)
            row.append("-" if quality is None else f"{quality.r1:.3f} / {quality.r2:.3f}")
        limits = item.ceilings
        row.append("-" if limits is None else f"{limits.range_r2:.2f} / {limits.periodic_r2:.2f}")
        table.add_row(*row)
    out.print(table)
    more = _more_table(interpretations[:20])
    if more is not None:
        out.print(more)
    console.print(f"final answer: {FINAL_RULE}", highlight=False, markup=False)
    if len(interpretations) > 20:
        console.print(f"... and {len(interpretations) - 20} more images")
    for item in interpretations:
        if item.verdict is not None and item.verdict.label != EXPLAINED:
            colour = "red" if item.verdict.label == NOT_EXPLAINED else "yellow"
            console.print(f"[{colour}]warning[/{colour}]: {escape(short_name(item.source))} is "
                          f"{escape(item.verdict.line())}", highlight=False)  # fmt: skip
    verdict = escape(f" [{first.verdict.label}]") if first.verdict is not None else ""
    console.print(f"encoding of {escape(first.summary())}{verdict}", highlight=False)


def _more_table(interpretations) -> Table | None:
    """Every field of the records that the table above does not show (the generic rule of results.json), one
    column per plain value: a field added to the record appears here by itself."""
    import dataclasses

    from cfsx.interpretation.results import generic_fields
    from cfsx.io import records
    from cfsx.io.readers import short_name

    columns: dict[str, list[str]] = {}
    for name, _ in generic_fields():
        for index, item in enumerate(interpretations):
            value = getattr(item, name)
            plain = records.to_plain(value) if dataclasses.is_dataclass(value) else {name: value}
            for key, entry in (plain or {}).items():
                if isinstance(entry, bool | int | float | str) or entry is None:
                    label = f"{name}: {key}".replace("_", " ") if dataclasses.is_dataclass(value) else name
                    cells = columns.setdefault(label, ["-"] * len(interpretations))
                    cells[index] = (
                        "-"
                        if entry is None
                        else entry
                        if isinstance(entry, str)
                        else ("yes" if entry else "no")
                        if isinstance(entry, bool)
                        else f"{entry:.3g}"
                    )
    if not columns:
        return None
    table = Table(title="more of each image's record")
    table.add_column("image", overflow="fold")
    for label in columns:
        table.add_column(label, justify="right", overflow="fold")
    for index, item in enumerate(interpretations):
        table.add_row(escape(short_name(item.source)), *(escape(cells[index]) for cells in columns.values()))
    return table


def _verdict_text(verdict) -> str:
    from cfsx.interpretation.fit_quality import EXPLAINED, NOT_EXPLAINED, PARTLY

    if verdict is None:
        return "-"
    colour = {EXPLAINED: "green", PARTLY: "yellow", NOT_EXPLAINED: "red"}[verdict.label]
    return f"[{colour}]{verdict.label}[/{colour}]"


def _std(values) -> float:
    import numpy as np

    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
