"""Predict with a saved model: `python predict.py model=<run|.onnx|.ckpt> input=<.csv|.npy|-> ...`.

Deliberately not a Hydra app: the ONNX path imports only numpy and onnxruntime, so it starts fast.
"""

import sys

from linreg.serve.predict import main

if __name__ == "__main__":
    main(sys.argv[1:])
