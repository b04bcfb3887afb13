"""Pipeline steps: one module each, one pure entry point `run(cfg, ...)`."""
