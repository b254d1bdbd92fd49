"""`hydra/sweeper=linreg_optuna`: Bayesian search over a run's settings with Optuna.

Why not the released hydra-optuna-sweeper: it needs optuna < 3 (and, for SQLite storage, pinning
SQLAlchemy < 2), which would hold back the whole environment. This one is small, works with current
Optuna, and does what a long search needs:

- `n_trials` is the size of the whole study: started again on the same storage, a search runs only
  the trials still missing, numbering job folders after the ones that exist, and its sampler is
  seeded from (sampler_seed, trials so far), so a resumed search does not replay earlier settings;
- a trial that crashed or whose objective is not finite is recorded as failed; the search goes on.
"""

# No `from __future__ import annotations`: Hydra imports plugins in a way that breaks dataclasses
# with string annotations.
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
# The study's count of trials an interrupted search left running (retried, not counted as run).
INTERRUPTED = "linreg.interrupted_trials"


@dataclass
class LinregOptunaSweeperConf:
    _target_: str = "hydra_plugins.linreg_optuna_sweeper.optuna_sweeper.LinregOptunaSweeper"
    n_trials: int = 20
    # Trials launched together (run in parallel by a parallel launcher such as joblib).
    n_jobs: int = 1
    direction: str = "minimize"
    sampler_seed: int = 0
    storage: str | None = None
    study_name: str = "linreg"
    # name -> {choices: [...]} or {low: x, high: y, log: bool, step: s}; ints stay ints.
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="linreg_optuna", node=LinregOptunaSweeperConf, provider="linreg"
)


def distribution(name: str, spec: dict[str, Any]) -> Any:
    """An Optuna distribution from a plain spec, so search spaces live in YAML."""
    import optuna.distributions as dists

    if "choices" in spec:
        return dists.CategoricalDistribution(list(spec["choices"]))
    if {"low", "high"} <= spec.keys():
        low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
        if isinstance(low, int) and isinstance(high, int):
            return dists.IntDistribution(low, high, log=log, step=spec.get("step", 1))
        return dists.FloatDistribution(float(low), float(high), log=log, step=spec.get("step"))
    raise ValueError(f"hydra.sweeper.params.{name}: give either choices or low and high")


class LinregOptunaSweeper(Sweeper):
    # Run again into its sweep folder, it continues the study (see the module's docstring).
    resumes = True

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        try:
            import optuna
            from optuna.trial import TrialState
        except ImportError:
            print(
                "error: hparams_search=optuna needs Optuna: pip install -e '.[sweep]'",
                file=sys.stderr,
            )
            sys.exit(1)
        # Its INFO lines ("A new study created", each trial's value) repeat the sweep's own.
        optuna.logging.set_verbosity(optuna.logging.WARNING)

        settings = self.settings
        params = OmegaConf.to_container(OmegaConf.create(settings["params"]), resolve=True)
        space = {name: distribution(name, spec) for name, spec in params.items()}
        if not space:
            raise ValueError("hydra.sweeper.params is empty: nothing to search")
        Path(self.config.hydra.sweep.dir).mkdir(
            parents=True, exist_ok=True
        )  # the storage may live there
        study = optuna.create_study(
            study_name=settings["study_name"],
            storage=settings["storage"],
            direction=settings["direction"],
            load_if_exists=True,
        )
        # Trials left running by an interrupted search (killed) are retried with the same
        # settings: the study keeps them as failed, and counts them apart so that they are not
        # taken for trials that ran (a trial that crashed or diverged did run, and counts).
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for trial in stale:
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, skip_if_exists=False)
        interrupted = study.user_attrs.get(INTERRUPTED, 0) + len(stale)
        study.set_user_attr(INTERRUPTED, interrupted)
        finished = (
            len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))
            - interrupted
        )
        remaining = settings["n_trials"] - finished
        study.sampler = optuna.samplers.TPESampler(
            seed=settings["sampler_seed"] + len(study.trials)
        )
        log.info(
            "study %s: %d trials done, %d to run",
            settings["study_name"],
            finished,
            max(remaining, 0),
        )

        while remaining > 0:
            trials = [study.ask(space) for _ in range(min(settings["n_jobs"], remaining))]
            overrides = [self._overrides(arguments, trial.params) for trial in trials]
            results = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results, strict=True):
                self._tell(study, trial, result)
            remaining -= len(trials)
        self._write_best(study)

    @staticmethod
    def _overrides(arguments: Sequence[str], params: dict[str, Any]) -> tuple[str, ...]:
        return (*arguments, *(f"{name}={value}" for name, value in params.items()))

    @staticmethod
    def _tell(study: Any, trial: Any, result: Any) -> None:
        from optuna.trial import TrialState

        try:
            value = float(result.return_value)
        except Exception as err:  # the job raised: its return_value re-raises that error
            log.warning("trial %d failed: %s", trial.number, err)
            study.tell(trial, state=TrialState.FAIL)
            return
        if not math.isfinite(value):
            log.warning("trial %d failed: objective %s", trial.number, value)
            study.tell(trial, state=TrialState.FAIL)
            return
        study.tell(trial, value)

    def _write_best(self, study: Any) -> None:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            log.warning("no trial completed")
            return
        best = {"best_value": study.best_value, "best_params": study.best_params}
        out = Path(self.config.hydra.sweep.dir) / "optimization_results.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(best), out)
        log.info("best %s: %s", best["best_value"], best["best_params"])
