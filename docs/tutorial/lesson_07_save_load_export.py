"""Lesson 7: save, load, export and serve.

Two ways to save: a `state_dict` (the weights alone, for inference) and a full Lightning checkpoint
(weights, optimizer state, hyper-parameters, epoch, for resuming). Then export to ONNX and serve it
with onnxruntime, which needs neither PyTorch nor this project. `train.py` does all of it for every
run (src/linreg/pipeline.py and src/linreg/export.py).

Run: python docs/tutorial/lesson_07_save_load_export.py
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from lesson_06_lightning import plain_trainer, small_datamodule  # the same set-up as lesson 6

from linreg.export import export_onnx
from linreg.model import LinearRegressionModule
from linreg.regressor import LinearRegressor


def main(workdir: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return run(Path(workdir or tmp))


def run(workdir: Path) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    datamodule = small_datamodule(n_samples=2000, n_features=4, seed=1)
    module = LinearRegressionModule(4, optimizer=functools.partial(torch.optim.Adam, lr=0.1))
    module.fit_standardization(datamodule.split("train")[0])
    trainer = plain_trainer(max_epochs=3)
    trainer.fit(module, datamodule=datamodule)
    features = datamodule.split("test")[0][:10]
    with torch.inference_mode():
        expected = module(features)

    print("== 1. state_dict: weights only ==")
    weights_path = workdir / "regressor.pt"
    torch.save(module.regressor.state_dict(), weights_path)
    fresh = LinearRegressor(4, 1)
    fresh.load_state_dict(torch.load(weights_path, weights_only=True))
    facts["state_dict_keys"] = sorted(fresh.state_dict())
    facts["state_dict_roundtrip"] = torch.equal(fresh(features).detach(), expected)
    print(
        f"saved {facts['state_dict_keys']}; the reloaded model predicts identically: "
        f"{facts['state_dict_roundtrip']}"
    )
    print(
        "weights_only=True unpickles tensors and plain containers only, so a file from a stranger"
    )
    print("cannot run code while loading: use it for every file you did not write yourself.")

    print("\n== 2. Full checkpoint: everything needed to resume ==")
    checkpoint_path = workdir / "model.ckpt"
    trainer.save_checkpoint(checkpoint_path, weights_only=False)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    facts["checkpoint_epoch"] = checkpoint["epoch"]
    facts["checkpoint_hparams"] = checkpoint["hyper_parameters"]
    facts["checkpoint_has_optimizer_state"] = bool(checkpoint["optimizer_states"])
    print(
        f"keys include epoch={checkpoint['epoch']}, hyper_parameters="
        f"{checkpoint['hyper_parameters']}, optimizer_states (Adam's moments)"
    )
    # map_location: a module trained on a GPU would otherwise come back on the GPU, and the CPU
    # tensors fed to it below would be refused.
    restored = LinearRegressionModule.load_from_checkpoint(
        checkpoint_path, map_location="cpu", weights_only=True
    )
    facts["checkpoint_roundtrip"] = torch.equal(restored(features).detach(), expected)
    print(
        f"LinearRegressionModule.load_from_checkpoint predicts identically: "
        f"{facts['checkpoint_roundtrip']}"
    )

    print("\n== 3. Export to ONNX and serve with onnxruntime ==")
    onnx_path = export_onnx(module.regressor, 4, workdir / "model.onnx", opset=20)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (served,) = session.run(None, {"features": features.numpy()})
    facts["onnx_max_abs_diff"] = float((torch.from_numpy(served) - expected).abs().max())
    print(f"onnxruntime on 10 raw rows: max |onnx - torch| = {facts['onnx_max_abs_diff']:.2e}")
    return facts


if __name__ == "__main__":
    main()
