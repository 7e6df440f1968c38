"""`charrnn export`: a model in formats other programs read (safetensors, ONNX, a web page)."""
