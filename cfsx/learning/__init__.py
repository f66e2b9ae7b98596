"""cfsx.learning."""
