"""The file ``cfsx correct`` writes (a cfsx dataset of kind "corrected") and reads back as Correction records."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from cfsx import __version__
from cfsx.config import CorrectionConfig
from cfsx.correction.record import Correction
from cfsx.errors import DataError
from cfsx.io.dataset import FORMAT, FORMAT_VERSION, open_dataset
from cfsx.io.outputs import atomic_hdf5


def write_corrections(path: str | Path, corrections: list[Correction], config: CorrectionConfig) -> None:
    """The dataset of kind "corrected" that ``cfsx correct`` writes: images, masks, sources and each image's
    provenance (JSON text), with the config that made them; ``read_corrections`` gives the records back."""
    import json

    from cfsx.io.nexus import add_view, add_window_axes

    size = config.output.image_size
    with atomic_hdf5(path, size=sum(c.image.nbytes + c.mask.nbytes for c in corrections)) as file:
        file.attrs.update(
            format=FORMAT, format_version=FORMAT_VERSION, kind="corrected", cfsx_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            config=config.to_yaml(), image_size=size, h_max=config.output.h_max,
        )  # fmt: skip
        options = {"chunks": (1, size, size), "compression": "gzip", "shuffle": True}
        file.create_dataset("images", data=np.stack([c.image for c in corrections]), **options)
        file.create_dataset("masks", data=np.stack([c.mask for c in corrections]), **options)
        text = h5py.string_dtype()
        provenance = [json.dumps(c.provenance, default=float) for c in corrections]
        file.create_dataset("provenance", data=provenance, dtype=text)
        file.create_dataset("sources", data=[c.source for c in corrections], dtype=text)
        if all(c.counts is not None for c in corrections):
            file.create_dataset("counts", data=np.stack([c.counts for c in corrections]).astype(np.int64), **options)
        if all(c.variance is not None for c in corrections):
            file.create_dataset("variance", data=np.stack([c.variance for c in corrections]), **options)
        add_view(file, signal="images", h_max=config.output.h_max, title="cfsx correct", config_text=config.to_yaml())
        windows = [(c.step("resample") or {}).get("window") for c in corrections]
        add_window_axes(file["entry/data"], windows, size, config.output.h_max)


def read_corrections(path: str | Path) -> list[Correction]:
    """The Correction records of a file that ``write_corrections`` wrote."""
    import json

    with open_dataset(path) as file:
        if file.attrs.get("kind") != "corrected":
            raise DataError(f"{path} is not a file of cfsx correct (kind corrected)")
        images, masks = file["images"][()], file["masks"][()]
        provenance = [json.loads(text) for text in file["provenance"].asstr()[()]]
        sources = list(file["sources"].asstr()[()])
        counts = list(file["counts"][()]) if "counts" in file else [None] * len(images)
        variance = list(file["variance"][()]) if "variance" in file else [None] * len(images)
    return [Correction(*parts) for parts in zip(images, masks, provenance, sources, counts, variance, strict=True)]
