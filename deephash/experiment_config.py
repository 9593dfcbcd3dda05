"""One experiment's settings as one frozen object, built once (from a script's flags or by
hand) and passed whole to ``presets.spec``, ``sweep.run_grid`` and the ``reproduce``
functions:

    cfg = ExperimentConfig(preset="quick", seeds=(0, 1), runs_dir="results/runs")
    reproduce.dseh_table1("digits_multi", cfg, out="results/dseh_table1")

``paper`` is the paper whose protocol and baselines an experiment follows (each
``reproduce`` function sets its own); ``hparams`` maps a method name to hyper-parameters
merged over the preset's. Bad values raise ValueError when the object is built.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from deephash import validation

PRESETS = ("quick", "paper")
PAPERS = ("dsrh", "dseh")
REUSE = ("any", "same_code")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """What every run of an experiment shares (see the module docstring).

    * ``preset``: ``"quick"`` or ``"paper"`` (``deephash.presets``); ``paper``: ``"dsrh"``
      or ``"dseh"``;
    * ``seeds``: the runs' seeds; ``seed_bits``: code lengths run with every seed, the
      others with the first seed only (None: every seed everywhere);
    * ``features``, ``root``, ``weights``: shallow methods' features, a file-based data
      set's directory, pretrained backbone weights;
    * ``epochs``, ``lr``: override the preset's; ``hparams``: ``{method: {name: value}}``;
    * ``runs_dir``: where run directories are kept and reused; ``reuse``: ``"any"`` or
      ``"same_code"`` (``deephash.sweep``); ``allow_missing``: skip unregistered methods;
    * ``verbose``: Keras progress; ``strategy``: the tf.distribute strategy of the runs;
    * ``jobs``: worker processes that train a grid's missing runs side by side
      (``sweep.parallel``; None or 1: one at a time, in this process).
    """

    preset: str = "quick"
    paper: str = "dsrh"
    seeds: tuple[int, ...] = (0,)
    seed_bits: tuple[int, ...] | None = None
    features: str | None = None
    root: str | None = None
    weights: str | None = None
    epochs: int | None = None
    lr: float | None = None
    hparams: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    runs_dir: str | None = None
    reuse: str = "any"
    allow_missing: bool = False
    verbose: Any = 0
    strategy: str = "default"
    jobs: int | None = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.paper not in PAPERS:
            raise ValueError(f"unknown paper {self.paper!r}; choose one of {', '.join(PAPERS)}")
        if self.reuse not in REUSE:
            raise ValueError(f"reuse must be one of {', '.join(REUSE)}, got {self.reuse!r}")
        seeds = tuple(validation.check_int(s, "seeds", minimum=0) for s in self.seeds)
        object.__setattr__(self, "seeds", seeds)
        if self.seed_bits is not None:
            object.__setattr__(self, "seed_bits", tuple(int(b) for b in self.seed_bits))
        if self.epochs is not None:
            object.__setattr__(self, "epochs", validation.check_int(self.epochs, "epochs"))
        if self.lr is not None:
            object.__setattr__(self, "lr", float(self.lr))
        if self.jobs is not None:
            object.__setattr__(self, "jobs", validation.check_int(self.jobs, "jobs", minimum=1))
            if self.jobs > 1 and self.strategy == "multiworker":
                raise ValueError(
                    "jobs > 1 trains runs in separate worker processes, which a multiworker "
                    f"cluster cannot. Received: jobs={self.jobs}, strategy='multiworker'"
                )
        hparams = {str(k).lower(): dict(v or {}) for k, v in (self.hparams or {}).items()}
        object.__setattr__(self, "hparams", hparams)

    def replace(self, **changes) -> ExperimentConfig:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def method_hparams(self, method: str) -> dict | None:
        """The hyper-parameters given for ``method`` (None when none were)."""
        found = self.hparams.get(str(method).lower())
        return None if found is None else dict(found)


def from_settings(experiment: ExperimentConfig | None, settings: dict) -> ExperimentConfig:
    """``experiment`` (default ``ExperimentConfig()``) with ``settings`` (its field names)
    replaced: the keyword form the library functions still accept."""
    base = experiment if experiment is not None else ExperimentConfig()
    if not isinstance(base, ExperimentConfig):
        validation.fail("experiment", "an ExperimentConfig", base)
    unknown = set(settings) - {f.name for f in dataclasses.fields(ExperimentConfig)}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    return base.replace(**settings) if settings else base


__all__ = ["ExperimentConfig", "from_settings", "PRESETS", "PAPERS", "REUSE"]
