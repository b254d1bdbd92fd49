"""The run config: schemas (types), validation (values) and resolvers (resumed run folders).

`register` makes them known to Hydra and OmegaConf. Hydra calls it in every process that composes
a config, through the `hydra_plugins.linreg_config` plugin, so no entry point has to.
"""

from __future__ import annotations

from omegaconf import DictConfig

from linreg.config.resolvers import register_resolvers
from linreg.config.schemas import data_schema, register_schemas
from linreg.config.validation import check_run_options


def register() -> None:
    register_schemas()
    register_resolvers()


def validate(cfg: DictConfig) -> None:
    """Reject values that are well-typed but meaningless, naming the key, before anything runs:
    the data source's schema checks its own keys, the rest is common to every run."""
    data_schema(cfg.data).check(cfg.data)
    check_run_options(cfg)
