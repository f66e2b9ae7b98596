"""From observed images to encodings and how well they explain the images: ``interpret`` (the command's work, module
interpret), the images it reads (observed), the estimates and the final rule, refinement, model images, fit quality
and the verdict, the Interpretation record and its files (results), the knowledge store (store)."""

from cfsx.interpretation.interpret import (  # noqa: F401
    InterpretationOutput,
    InterpretationResult,
    Progress,
    decoding_settings,
    interpret,
    interpret_images,
    interpret_observed,
    select_decoded,
)
from cfsx.interpretation.observed import Observed, check_images, image_facts, read_observed  # noqa: F401
from cfsx.interpretation.results import INDENTED_RESULTS, SCHEMA_PATH  # noqa: F401
from cfsx.interpretation.store import record_store, store_attributes  # noqa: F401
