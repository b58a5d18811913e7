"""minist: supervised compression for split computing (the Entropic Student), for learning."""

__version__ = "0.1.0"
