"""The config resolvers `conf/hydra/default.yaml` uses to send a resumed run back to its folder."""

from __future__ import annotations

from omegaconf import OmegaConf


def resumed_run_dir(ckpt_path: str | None, new_run_dir: str) -> str:
    """Hydra's run folder: a resumed run (ckpt_path set) continues in the folder it came from."""
    if not ckpt_path:
        return new_run_dir
    from linreg.runs import run_dir_of  # imports torch: only paid when resuming

    return str(run_dir_of(ckpt_path))


def saved_config_subdir(ckpt_path: str | None, timestamp: str) -> str:
    """Where Hydra saves the composed config: a resume must not overwrite the run's original."""
    return f".hydra/resumed/{timestamp}" if ckpt_path else ".hydra"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("linreg.run_dir", resumed_run_dir, replace=True)
    OmegaConf.register_new_resolver("linreg.config_subdir", saved_config_subdir, replace=True)
