"""Application domains of attnlab, each built from ``core``."""
