"""Serving a trained model: the ONNX file (export, verify) and batch prediction.

The names the two sides share, defined where both can read them without importing torch.
"""

INPUT_NAME = "features"
OUTPUT_NAME = "predictions"
# Metadata keys of the ONNX file: JSON lists of the column names the model was trained on.
FEATURE_NAMES = "linreg.feature_names"
TARGET_NAMES = "linreg.target_names"
