"""``cfsx correct`` and the options it shares with ``interpret`` (calibration, centre, zones, lattice, mask, frames)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cfsx.app.cli.common import (
    FLAGS,
    JsonFlag,
    SetOverrides,
    app,
    console,
    examples,
    print_json,
    progress_bar,
    renamed,
    reported_errors,
    result_console,
)

Origin = Annotated[str | None, typer.Option(help="Calibration: pixel ROW,COLUMN of h = k = 0.")]


PixelsPerRlu = Annotated[
    str | None, typer.Option(help="Calibration: pixels per reciprocal lattice unit along ROWS,COLUMNS.")
]


Rotation = Annotated[float | None, typer.Option(help="Calibration: rotation of h, k against the pixels (deg).")]


Centre = Annotated[
    str | None,
    typer.Option(help="Centre the window on this reciprocal lattice point: by the file's axis names (H=-2,L=4) "
                 "or as ROW,COL in the file's axes (r.l.u.).", metavar="H=-2,L=4|ROW,COL"),
]  # fmt: skip


Zones = Annotated[
    str | None,
    typer.Option(help="all: fold every measured zone onto the window (calibrated images); centre: the window only.",
                 metavar="all|centre"),
]  # fmt: skip


Lattice = Annotated[
    str | None,
    typer.Option(help="The crystal's centring, for the plane's reciprocal lattice points (default P); F: (H, L) "
                 "both even in h0l.", metavar="P|I|F|C|A|B"),
]  # fmt: skip


MaskFile = Annotated[str | None, typer.Option(help="Mask image: nonzero pixels are excluded (mask.file).")]


Frames = Annotated[str | None, typer.Option(help="Frames a:b of 3-D stacks, each an image (or FILE[3] for one frame).")]


SumFrames = Annotated[bool, typer.Option("--sum-frames", help="Sum the (selected) frames of 3-D stacks into one.")]


Plane = Annotated[
    str | None,
    typer.Option(help="Plane of 3-D h, k, l volumes: l=0 (the nearest slice) or l=0+-0.05 (the sum of slices)."),
]


@app.command(
    epilog=examples(
        [
            "cfsx correct 'scans/*.cbf' -o corrected.h5 --origin 1024,980 --pixels-per-rlu 160,160",
            "cfsx correct ZrO2.nxs -o zro2.h5 --lattice F --set mask.edge=2 --figures figures/",
            "cfsx correct ZrO2.nxs -o one.h5 --lattice F --zones centre --centre H=-2,L=4",
        ]
    )
)
def correct(
    images: Annotated[
        list[str], typer.Argument(help="Image files (.npy, TIFF, PNG, HDF5 file::/path, fabio formats), dirs, globs.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Corrected images to write (.h5).")],
    config: Annotated[str, typer.Option(help="Correction config: a YAML file or a built-in name.")] = "correct",
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
    reference: Annotated[
        Path | None, typer.Option(help="Training dataset: match its intensity distribution (and plot it).")
    ] = None,
    figures: Annotated[
        Path | None, typer.Option("--figures", help="Directory for one before/after figure per image.")
    ] = None,
    figure: Annotated[Path | None, typer.Option("--figure", hidden=True, help="Old spelling of --figures.")] = None,
    set_: SetOverrides = None,
    json_: JsonFlag = False,
) -> None:
    """Clean measured images (mask, Bragg peaks, resample, fill, smooth, normalise) for the CNN."""
    with reported_errors():
        from cfsx.correction import correct_files
        from cfsx.io.readers import expand_inputs, select_frames, select_plane

        images = select_frames(expand_inputs(images), frames, sum_frames)
        images = select_plane(images, plane)

        from cfsx.config.flags import Calibration, correction_config

        calibration = Calibration(origin, pixels_per_rlu, rotation, centre, zones, lattice)
        resolved = correction_config(config, set_, calibration, mask, FLAGS)
        with progress_bar() as bar:
            task = bar.add_task("correct", total=None, rate="")
            results = correct_files(
                images,
                output,
                resolved,
                reference=str(reference) if reference else None,
                figure_dir=renamed("--figure", figure, "--figures", figures),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        out = result_console(json_)
        for correction in results[:20]:
            out.print(correction.summary(), highlight=False, markup=False)
        if len(results) > 20:
            out.print(f"... and {len(results) - 20} more images")
        console.print(f"wrote {len(results)} corrected images to {output}", highlight=False, markup=False)
        if json_:
            print_json({"output": output, "images": [correction.record() for correction in results]})
