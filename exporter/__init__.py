"""PyTorch CLaMP, checkpoint loading and ONNX export: everything that needs torch to make a model dir."""
