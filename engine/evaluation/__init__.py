"""Evaluation: the segmentation metric, inherited-weight scoring of subnets (here or on Dask), ONNX export checks."""
