"""What users run: the ``cfsx`` command line (cli/) and ``cfsx serve`` with its page (docs/architecture.md)."""
