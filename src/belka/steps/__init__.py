"""One module per step of the plan, each with a pure `run(cfg, ...)`."""
