"""lipbatch: a YAML manifest in, one verified lip-synced video per job out."""

__version__ = "0.1.0"
