"""clamp-index runtime: the torch-free core (patching, ONNX encoders, index queries)."""

__version__ = "0.1.0"
