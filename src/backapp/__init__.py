"""BackApp: a self-hosted backup manager with verified restore."""

__version__ = "0.1.0"
