"""vgbench: a reproducible benchmark of the vanishing and exploding gradient problem."""
__version__ = "0.1.0"
