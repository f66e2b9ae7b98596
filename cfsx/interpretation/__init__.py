"""``cfsx interpret``: from observed images to encodings, structures and how well they explain the images.

For every image: the CNN's encoding (averaged with the prediction on the transposed image, a
symmetry that lattice and image share); the structure and image the engine decodes from it
with the settings of the model's training data, several times with different seeds; image R2
and MSE of each decoded image against the observation (after the least-squares scale, since an
observation is in arbitrary units); a per-component uncertainty; optionally a refinement
(cfsx/refinement.py) from the CNN's encoding and from zero correlations. Results go to an
output directory (results.json, following cfsx/results.schema.json; results.h5; one figure per
image) written atomically, and optionally to a knowledge store that ``cfsx train`` can learn from."""

from cfsx.interpretation.interpret import (  # noqa: F401
    INDENTED_RESULTS,
    SCHEMA_PATH,
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
from cfsx.interpretation.store import record_store, store_attributes  # noqa: F401
