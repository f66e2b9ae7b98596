"""Config files: every mistake reported at once, each with its key."""

import pytest

from cfsx.config import load_config
from cfsx.errors import ConfigError


def test_every_mistake_of_a_config_file_is_reported_at_once_with_its_key(tmp_path):
    path = tmp_path / "three.yaml"
    path.write_text("lattice:\n  size: -4\n  colour: red\ndiffraction:\n  image_size: many\nfeedback:\n  gain: -1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith("4 problems in the config: ") and "\n" not in message
    for key in ("lattice.size", "lattice.colour", "diffraction.image_size", "feedback.gain"):
        assert key in message, key
    with pytest.raises(ConfigError, match=r"^lattice.size"):  # one mistake: its own message, as before
        load_config(None, ["lattice.size=-4"])
