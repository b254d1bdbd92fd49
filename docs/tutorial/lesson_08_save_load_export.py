"""Lesson 8: save, load, export and serve.

Two ways to save: a `state_dict` (the model's tensors, for inference) and a full Lightning
checkpoint (those plus the optimizer state, hyper-parameters and the epoch, for resuming). Then the
model is exported to ONNX, a file that onnxruntime serves without PyTorch or this project.
`train.py` does all of it for every run (src/linreg/run/pipeline.py, src/linreg/serve/export.py
and src/linreg/serve/onnx_model.py).

Run: python docs/tutorial/lesson_08_save_load_export.py
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from lesson_07_lightning import plain_trainer, small_datamodule  # the same set-up as lesson 7

from linreg.models.linear import LinearRegressor
from linreg.models.module import RegressionModule
from linreg.serve.onnx_model import quiet_exporter


def main(workdir: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return run(Path(workdir or tmp))


def run(workdir: Path) -> dict[str, Any]:
    datamodule = small_datamodule(n_samples=2000, n_features=4, seed=1)
    network = LinearRegressor(4, 1)  # the network; the module below trains it
    network.fit_standardization(*datamodule.split("train"))
    module = RegressionModule(network, optimizer=functools.partial(torch.optim.Adam, lr=0.1))
    trainer = plain_trainer(max_epochs=3)
    trainer.fit(module, datamodule=datamodule)
    features = datamodule.split("test")[0][:10]
    with torch.inference_mode():
        expected = module(features)

    print("== 1. state_dict: the model's parameters and buffers ==")
    plain = torch.nn.Linear(4, 1)  # any nn.Module saves and loads the same way
    torch.save(plain.state_dict(), workdir / "linear.pt")
    reloaded = torch.nn.Linear(4, 1)  # a new module of the same shape, then its tensors
    reloaded.load_state_dict(torch.load(workdir / "linear.pt", weights_only=True))
    plain_keys = sorted(reloaded.state_dict())
    plain_roundtrip = torch.equal(reloaded(features), plain(features))
    print(
        f"a plain nn.Linear saves {plain_keys}; loaded into a new nn.Linear(4, 1), it predicts "
        f"identically: {plain_roundtrip}"
    )
    weights_path = workdir / "regressor.pt"
    torch.save(module.net.state_dict(), weights_path)
    fresh = LinearRegressor(4, 1)
    fresh.load_state_dict(torch.load(weights_path, weights_only=True))
    keys = sorted(fresh.state_dict())
    roundtrip = torch.equal(fresh(features).detach(), expected)
    print(f"the project's network saves {len(keys)}: {keys}: the linear layer's weight and bias,")
    print("  and buffers: the features' mean and std, their decorrelating rotation, the targets'")
    print("  mean and std (fitted on the training rows, not trained: they travel with the weights)")
    print(f"the reloaded model predicts identically: {roundtrip}")
    print("torch.load reads with weights_only=True by default since torch 2.6 (here written out):")
    print("  it rebuilds tensors and plain containers only, so a file cannot run code as it loads.")
    print("  That narrows the risk of a stranger's file; it is not a sandbox, so load files from")
    print("  sources you trust, and prefer a format without code at all (ONNX below) for sharing.")

    print("\n== 2. Full checkpoint: everything needed to resume ==")
    checkpoint_path = workdir / "model.ckpt"
    trainer.save_checkpoint(checkpoint_path, weights_only=False)  # all of it, optimizer too
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    print(
        f"keys include epoch={checkpoint['epoch']}, hyper_parameters="
        f"{checkpoint['hyper_parameters']}, optimizer_states (Adam's moments)"
    )
    # map_location: a module trained on a GPU would otherwise come back on the GPU, and the CPU
    # tensors fed to it below would be refused.
    restored = RegressionModule.load_from_checkpoint(
        checkpoint_path, map_location="cpu", weights_only=True
    )
    checkpoint_roundtrip = torch.equal(restored(features).detach(), expected)
    print(f"RegressionModule.load_from_checkpoint predicts identically: {checkpoint_roundtrip}")

    print("\n== 3. Export to ONNX and serve with onnxruntime ==")
    onnx_path = workdir / "model.onnx"
    regressor = module.net.cpu().eval()
    # What linreg.serve.onnx_model.write does for any network: trace the model with
    # torch.export, a batch axis of any size, and write one self-contained file. (For the linear
    # network it writes the six nodes this call produces directly, which skips the exporter's
    # start-up of about a second.)
    with quiet_exporter():  # mutes the exporter's progress notes
        torch.onnx.export(
            regressor,
            (torch.zeros(2, 4),),  # an example input: its values do not matter, its shape does
            str(onnx_path),
            dynamo=True,
            input_names=["features"],
            output_names=["predictions"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=20,
            external_data=False,
            verbose=False,
        )
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (served,) = session.run(None, {"features": features.numpy()})
    onnx_diff = float((torch.from_numpy(served) - expected).abs().max())
    print(f"onnxruntime on 10 raw rows (the export saw 2): max |onnx - torch| = {onnx_diff:.2e}")

    # What tests/test_tutorial.py checks.
    return {
        "plain_state_dict_keys": plain_keys, "plain_roundtrip": plain_roundtrip,
        "state_dict_keys": keys, "state_dict_roundtrip": roundtrip,
        "checkpoint_epoch": checkpoint["epoch"],
        "checkpoint_hparams": checkpoint["hyper_parameters"],
        "checkpoint_has_optimizer_state": bool(checkpoint["optimizer_states"]),
        "checkpoint_roundtrip": checkpoint_roundtrip, "onnx_max_abs_diff": onnx_diff,
    }  # fmt: skip


if __name__ == "__main__":
    main()
