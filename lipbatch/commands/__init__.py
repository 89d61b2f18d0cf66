"""One module per sub-command; see ``lipbatch.cli``."""
