"""cfsx.app."""
