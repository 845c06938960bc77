"""Training and evaluation of the default model (torch); never imported by runtime/."""
