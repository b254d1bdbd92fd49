"""The run config: schemas (types), validation (values) and resolvers (resumed run folders).

`register` makes them known to Hydra and OmegaConf. Hydra calls it in every process that composes
a config, through the `hydra_plugins.linreg_config` plugin, so no entry point has to.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from linreg.config.resolvers import register_resolvers
from linreg.config.schemas import data_schema, register_schemas
from linreg.config.validation import check_run_options
from linreg.errors import ConfigError


def register() -> None:
    register_schemas()
    register_resolvers()


def _missing_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """The keys left at `???`, found without resolving interpolations (OmegaConf.missing_keys
    resolves them, and some name Hydra's runtime, which is not set before the run starts)."""
    missing = []
    for key in node:
        if OmegaConf.is_missing(node, key):
            missing.append(f"{prefix}{key}")
        elif not OmegaConf.is_interpolation(node, key) and OmegaConf.is_dict(node[key]):
            missing.extend(_missing_keys(node[key], f"{prefix}{key}."))
    return missing


def validate(cfg: DictConfig) -> None:
    """Reject values that are well-typed but meaningless, naming the key, before anything runs:
    the data source's schema checks its own keys, the rest is common to every run."""
    missing = [key for key in _missing_keys(cfg) if not key.startswith("hydra.")]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)}: no value given; set {'them' if len(missing) > 1 else 'it'} "
            f"on the command line ({' '.join(f'{key}=...' for key in missing)})"
        )
    data_schema(cfg.data).check(cfg.data)
    check_run_options(cfg)
