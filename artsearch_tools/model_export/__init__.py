"""`make model`: the ONNX export, its int8 variant, the Triton model repository."""
