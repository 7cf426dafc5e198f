"""vgbench: a reproducible benchmark of the vanishing and exploding gradient problem."""
__version__ = "0.1.0"


def __getattr__(name):
    # `vgbench.diagnose(model, x)` without importing torch when only the version is wanted
    if name == "diagnose":
        import importlib
        return importlib.import_module("vgbench.diagnose")
    raise AttributeError(f"module 'vgbench' has no attribute {name!r}")
