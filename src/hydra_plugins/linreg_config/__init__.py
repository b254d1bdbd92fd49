"""Registers linreg's config schemas and resolvers with Hydra.

Hydra imports every module under `hydra_plugins` when it starts (in `train.py`, `eval.py`, the
compose API and sweep workers alike), before it composes a config.
"""

from linreg.config import register

register()
