"""A study's search space as one Optuna define-by-run function.

The YAML ``search.space`` of a method (parsed and checked by :mod:`faerec.study.spec`) becomes a
:class:`SearchSpace`: a frozen tree of :class:`Param` whose ``__call__(trial)`` asks Optuna for
every value. Because it is define-by-run, a conditional ``choice`` (a mapping from option to
parameters) only suggests the parameters of the option it drew, so ``faerec.period`` exists in a
trial exactly when ``faerec.curriculum`` is ``cosine``. The *same* object serves Ray Tune's
``OptunaSearch(space=...)`` and a plain ``optuna.Study.optimize`` objective, and it pickles (Ray
keeps the searcher, space included, in its resume snapshots).

Optuna parameter names are the configuration keys themselves (``faerec.tau``), so a trial's
parameters are directly its ``--set`` overrides. This module imports Optuna lazily: validating a
spec never loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: distribution words of the YAML space, in the order the docs list them
KINDS = ("choice", "uniform", "loguniform", "int", "discrete")


@dataclass(frozen=True)
class Param:
    """One searched configuration key.

    ``kind`` is the YAML word: ``choice`` (``choices``; with ``branches`` when each option has
    its own parameters), ``uniform``/``loguniform``/``discrete`` (floats; ``discrete`` has a
    ``step``) or ``int`` (optional ``step`` or ``log``).
    """

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    #: conditional choice: (option, parameters suggested only when that option is drawn)
    branches: tuple[tuple[Any, tuple[Param, ...]], ...] = ()
    #: YAML line of the key (0 when the space came from a stored, already checked spec)
    line: int = 0

    @property
    def conditional(self) -> bool:
        return bool(self.branches)

    def suggest(self, trial: Any, out: dict[str, Any]) -> None:
        """Ask ``trial`` for this value (and its branch's values), adding them to ``out``."""
        if self.kind == "choice":
            value = trial.suggest_categorical(self.key, list(self.choices))
            out[self.key] = value
            for option, params in self.branches:
                if option == value:
                    for param in params:
                        param.suggest(trial, out)
            return
        if self.kind == "int":
            assert self.low is not None and self.high is not None
            out[self.key] = trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
            return
        assert self.low is not None and self.high is not None
        out[self.key] = trial.suggest_float(
            self.key,
            float(self.low),
            float(self.high),
            step=None if self.step is None else float(self.step),
            log=self.kind == "loguniform",
        )

    def walk(self) -> Iterator[Param]:
        """This parameter, then every parameter of its branches (depth first)."""
        yield self
        for _, params in self.branches:
            for param in params:
                yield from param.walk()

    def grid_values(self) -> list[Any] | None:
        """Every value of a finite, unconditional parameter; None when it is continuous."""
        if self.kind == "choice":
            return None if self.branches else list(self.choices)
        if self.kind == "int" and not self.log:
            assert self.low is not None and self.high is not None
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.kind == "discrete":
            assert self.low is not None and self.high is not None and self.step
            count = int(round((float(self.high) - float(self.low)) / float(self.step))) + 1
            return [round(float(self.low) + i * float(self.step), 12) for i in range(count)]
        return None

    def to_spec(self) -> Any:
        """The YAML value that parses back to this parameter (used in study.json)."""
        if self.kind == "choice":
            if self.branches:
                return {
                    "choice": {
                        option: {p.key: p.to_spec() for p in params}
                        for option, params in self.branches
                    }
                }
            return {"choice": list(self.choices)}
        if self.kind == "discrete":
            return {"discrete": [self.low, self.high, self.step]}
        spec: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.step is not None:
            spec["step"] = self.step
        if self.log:
            spec["log"] = True
        return spec

    def describe(self) -> str:
        """A short human form, e.g. ``loguniform [0.02, 0.5]``."""
        if self.kind == "choice":
            if self.branches:
                parts = []
                for option, params in self.branches:
                    inner = ", ".join(p.key for p in params)
                    parts.append(f"{option}: {{{inner}}}" if inner else str(option))
                return "choice " + "; ".join(parts)
            return "choice [" + ", ".join(str(c) for c in self.choices) + "]"
        text = f"{self.kind} [{self.low}, {self.high}]"
        if self.step is not None:
            text += f" step {self.step}"
        return text + (" log" if self.log else "")


@dataclass(frozen=True)
class SearchSpace:
    """The search space of one method: a define-by-run function for Optuna.

    Calling it with an ``optuna.Trial`` suggests every parameter (conditional ones only on their
    branch) and returns None, which is what ``OptunaSearch`` expects; :meth:`suggest` returns the
    drawn values for a plain Optuna objective.
    """

    params: tuple[Param, ...]

    def __call__(self, trial: Any) -> None:
        self.suggest(trial)

    def suggest(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for param in self.params:
            param.suggest(trial, values)
        return values

    def walk(self) -> Iterator[Param]:
        for param in self.params:
            yield from param.walk()

    def keys(self) -> list[str]:
        """Every configuration key the space can set, in first-appearance order."""
        seen: dict[str, None] = {}
        for param in self.walk():
            seen.setdefault(param.key, None)
        return list(seen)

    def grid(self) -> dict[str, list[Any]] | None:
        """The grid for ``optuna.samplers.GridSampler``; None when a parameter is not finite."""
        grid: dict[str, list[Any]] = {}
        for param in self.params:
            values = param.grid_values()
            if values is None:
                return None
            grid[param.key] = values
        return grid

    def grid_size(self) -> int | None:
        grid = self.grid()
        if grid is None:
            return None
        size = 1
        for values in grid.values():
            size *= len(values)
        return size

    def to_spec(self) -> dict[str, Any]:
        return {param.key: param.to_spec() for param in self.params}

    def describe(self) -> list[str]:
        """One line per top-level parameter."""
        return [f"{param.key}: {param.describe()}" for param in self.params]


def build_sampler(kind: str, seed: int, space: SearchSpace | None = None) -> Any:
    """An Optuna sampler for ``search.sampler``, seeded.

    Callers pass ``seed = search.seed + len(existing trials)`` whenever they build a fresh sampler
    for an existing study: a sampler restarted with the same seed would propose the configurations
    it already proposed (docs/ray-tune-notes.md §Seeded sampler on resume).
    """
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        # categorical parameters fall back to independent random sampling; that is expected
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "grid":
        grid = None if space is None else space.grid()
        if grid is None:
            raise ValueError("the grid sampler needs a space of finite, unconditional parameters")
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise ValueError(f"unknown sampler {kind!r}")
