"""Every measured zone of the real ZrO2 plane (F lattice, h0l) folded onto the window: per-zone agreement, the
cross-zone consistency and the share of the window measured, into the marked block ``zones-zro2`` of
docs/correction.md with its figure, against the window around one centre (``--centre H=-2,L=4``)."""

from __future__ import annotations

import argparse
import sys
import time

from harness import ROOT, add_figures, add_output, machine_line, markdown_table, replace_block

from cfsx.config import CorrectionConfig, load_config
from cfsx.correction import INPAINTED, MEASURED, correct_file
from cfsx.io import plots

COMMAND = "make validate-correct"
SETTINGS = ["geometry.lattice=F", "mask.edge=2"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plane", help="the ZrO2 plane (ZrO2.nxs)")
    add_output(parser, ROOT / "docs" / "correction.md", help_text=None)
    add_figures(parser, ROOT / "docs" / "correction")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    folded_config = load_config("correct", SETTINGS, root=CorrectionConfig)
    raw, folded = correct_file(args.plane, folded_config)
    seconds = time.perf_counter() - started
    centre_config = load_config("correct", [*SETTINGS, "geometry.zones=centre", "geometry.centre={H: -2, L: 4}"],
                                root=CorrectionConfig)  # fmt: skip
    centre = correct_file(args.plane, centre_config)[1]
    zones = folded.step("zones").to_plain()
    rows = [
        (entry["name"], f"{entry['pixels']}", f"{100 * entry['coverage']:.0f} %", f"{entry['mean']:.2f}",
         "-" if entry["agreement"] is None else f"{entry['agreement']:+.2f}",
         "-" if entry["chi2"] is None else f"{entry['chi2']:.1f}", f"{entry['weight']:.3f}",
         "yes" if entry["disagrees"] else "no")
        for entry in zones["per_zone"]
    ]  # fmt: skip
    consistency = [
        (entry["name"], f"{entry['correlation']:+.3f}", f"{entry['ceiling']:.3f}",
         f"{entry['consistency']:+.2f}", str(entry["pairs"]))
        for entry in zones["consistency"]
    ]  # fmt: skip

    def share(correction, code: int) -> str:
        return f"{100 * (correction.mask == code).mean():.1f} %"

    falloff = zones["falloff"]["coefficients"]
    text = "\n\n".join([
        f"`cfsx correct ZrO2.nxs --lattice F --set mask.edge=2` (the default `--zones all`) against the window "
        f"around one centre (`--zones centre --centre H=-2,L=4`). {machine_line(COMMAND)} Fold: {seconds:.2f} s.",
        markdown_table(("window", "cells measured", "filled by symmetry", "inpainted"), [
            ("every zone folded (F lattice)", share(folded, MEASURED), share(folded, 1), share(folded, INPAINTED)),
            ("around H=-2, L=4 only", share(centre, MEASURED), share(centre, 1), share(centre, INPAINTED)),
        ]),
        f"{zones['zones']} zones (lattice points (H, L) both even), median {zones['median_zones_per_cell']:.0f} "
        f"zones per cell; pixel noise {zones['noise']:.3g} (after the falloff); falloff "
        f"log f = {falloff[0]:+.3f} {falloff[1]:+.3f} |Q| {falloff[2]:+.4f} |Q|^2 (|Q| in r.l.u. of the cubic cell). "
        "Per zone: its agreement r with the fold of the other zones, chi2 = its mean squared deviation from them "
        "in units of the noise, and the weight 1/max(1, chi2) it gets in the fold:",
        markdown_table(("zone G", "pixels", "coverage", "mean", "agreement r", "chi2", "weight", "disagrees"), rows),
        "Cross-zone consistency: the correlation of I(Q) with I(Q + G) over the cells both zones measured, beside "
        "the ceiling noise alone allows (a periodic image reaches it):",
        markdown_table(("G", "correlation", "noise ceiling", "ratio", "cell pairs"), consistency),
        "![zones](correction/zones-zro2.png)",
    ])  # fmt: skip
    replace_block(args.output, "zones-zro2", text)
    figure = plots.zones_figure(raw, folded)
    plots.save(figure, args.figures / "zones-zro2.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
