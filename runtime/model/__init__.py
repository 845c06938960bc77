"""Model dirs, families and the ONNX text and music encoders."""
