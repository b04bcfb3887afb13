"""Pipeline definitions and their compile / local-run entry points."""
