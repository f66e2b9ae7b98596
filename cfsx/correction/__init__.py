"""``cfsx correct``: make a measured image look like a training image.

Steps, in this order, each switchable in ``configs/correct.yaml``:
1. mask invalid pixels (NaN and inf always; optionally values <= 0, saturated values, given values);
2. find Bragg peaks and mask them: sharp, strong outliers above a local median (the default), a
   white top-hat with a disk, or (with a calibration) disks around every integer h, k;
3. resample to the training window h, k in [-h_max, h_max) on M x M points by AREA AVERAGING the
   valid detector pixels whose centres fall in each output cell (not point sampling); a cell with no
   pixel centre inside (pixels larger than cells) takes the valid pixel under its centre;
4. reconstruct cells without data: from the Friedel partner (-h, -k) and optional mirrors where
   those were measured, then biharmonic inpainting for the rest;
5. optional background: subtract a percentile, divide by a fitted falloff exp(-B (h^2 + k^2));
6. smoothing (Gaussian or median, in output pixels);
7. normalisation to a mean intensity (training images have mean c (1 - c) per site), or matching
   to the intensity histogram of a training dataset.
Every step records its parameters and what it did in the image's provenance."""

from cfsx.correction.bragg import bragg_peaks  # noqa: F401
from cfsx.correction.files import (  # noqa: F401
    FIGURE_PIXELS,
    correct_file,
    correct_files,
    mask_of,
    preview,
    preview_step,
    reference_images,
    warn_uncalibrated,
)
from cfsx.correction.fold import MAX_UNDER_POINTS  # noqa: F401
from cfsx.correction.pixels import (  # noqa: F401
    GAP_EVIDENCE,
    GAP_MIN_RATE,
    GAP_SURROUNDINGS,
    MAX_MEDIAN_COUNTS,
    SAMPLE_PIXELS,
    STRIP_PIXELS,
    Coordinates,
    Pixels,
    Progress,
    counting_quantum,
    invalid_pixels,
    pixel_coordinates,
    pixel_of,
    zero_gaps,
)
from cfsx.correction.record import FILLED_BY_SYMMETRY, INPAINTED, MEASURED, Correction  # noqa: F401
from cfsx.correction.resample import area_average, match_histogram  # noqa: F401
from cfsx.correction.steps import STEPS, correct_image, correct_images  # noqa: F401
