"""cfsx.io."""
