"""cfsx.physics."""
