"""Declarative studies: a YAML spec becomes Optuna searches run by Ray Tune, then final seeds.

* :mod:`faerec.study.spec`: parse and check a study file (``FILE:LINE: key: ...`` problems);
* :mod:`faerec.study.space`: a space as one Optuna define-by-run function (conditional branches);
* :mod:`faerec.study.store`: ``studies/<name>/`` files, written atomically;
* :mod:`faerec.study.runner`: the driver (search rounds per cell, final stage, report), with
  :mod:`~faerec.study.signals` (Ctrl-C/SIGTERM), :mod:`~faerec.study.ray_session`,
  :mod:`~faerec.study.bookkeeping` (experiments.json, trials.csv, epochs.csv, best.json,
  results.csv; no Ray), :mod:`~faerec.study.retry` (interrupted trials, resumed from their
  checkpoints), :mod:`~faerec.study.tune_setup` (the Tuner of a search round),
  :mod:`~faerec.study.cell_search` (the cells' searches at once, one thread each) and
  :mod:`~faerec.study.shared` (trial slots shared by the cells; drivers sharing a database);
* :mod:`faerec.study.searcher`, :mod:`faerec.study.trainable`: the Tune plug-ins;
* :mod:`faerec.study.final`: best configuration x seeds, on test;
* :mod:`faerec.study.progress`: the live per-cell progress lines.

Nothing here touches tensors: training is reached only through ``faerec.training.run_trial``.
Importing this package loads neither Ray nor Optuna nor torch.
"""

from faerec.study.spec import SpecError, StudySpec, parse_spec, spec_from_dict

__all__ = ["SpecError", "StudySpec", "parse_spec", "spec_from_dict"]
