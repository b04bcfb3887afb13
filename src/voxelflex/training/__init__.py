"""Training machinery shared by the train, predict and evaluate steps."""
