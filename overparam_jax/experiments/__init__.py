"""Paper experiments: one module per experiment — E1, E2 and E3 of THEORY.md §8, and the
deep matrix factorization of ACHL19 (``dmf``, the talk's "next step").

Each experiment module reads top to bottom as the protocol of its experiment —
its configuration, the computation (through the library's sweeps, trajectories and
:func:`overparam_jax.runner.run_chunks`), then its report (a JSON document, a markdown
summary, figures; :mod:`overparam_jax.experiments.report`) — and describes itself to the
command line with an :class:`Experiment`. ``overparam-jax reproduce <name>`` has one
handler for all of them: it builds the configuration with the experiment's ``configure``
from the common flags (``--quick``, ``--steps``, ``--seeds``, ``--seed``) and the
experiment's own, loads its data, runs it with progress bars and checkpoints, writes its
outputs and prints its summary lines.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["EXPERIMENTS", "Experiment", "Option", "get_experiment"]


class Option(NamedTuple):
    """A command-line option of one experiment: ``argparse`` flags and keyword arguments;
    its value reaches ``configure`` under the argparse ``dest`` name."""

    flags: tuple[str, ...]
    kwargs: Mapping[str, Any]


class Experiment(NamedTuple):
    """How an experiment runs from the command line (and from Python).

    Attributes:
        name: the ``reproduce`` sub-command.
        help: one line for ``overparam-jax reproduce --help``.
        description: what it runs and writes.
        options: its own command-line options (beyond the common ones).
        common: which common options apply, among ``"steps"``, ``"seeds"``, ``"seed"``.
        configure: ``configure(*, quick, steps, seeds, seed, **options) -> config``, every
            argument ``None`` when not given; raises ValueError/TypeError on a bad value.
        load: ``load(config) -> data`` (``None`` for experiments without external data);
            raises OSError/ValueError when the data cannot be read.
        run: ``run(config, data, *, progress, checkpoint) -> result``, with an optional
            :data:`~overparam_jax.runner.ProgressFn` and an optional
            :class:`~overparam_jax.checkpoint.CheckpointDir`.
        write_outputs: ``write_outputs(result, out_dir) -> {name: path}``.
        summary_lines: ``summary_lines(result) -> lines`` printed at the end.
        x64: the experiment computes in float64 somewhere (the command line enables it).
    """

    name: str
    help: str
    description: str
    options: Sequence[Option]
    common: Sequence[str]
    configure: Callable[..., Any]
    load: Callable[[Any], Any]
    run: Callable[..., Any]
    write_outputs: Callable[[Any, str | Path], dict[str, Path]]
    summary_lines: Callable[[Any], list[str]]
    x64: bool = False


_MODULES = {"acceleration": "acceleration", "init": "init_robustness", "cnn": "cnn_mnist", "dmf": "dmf"}
EXPERIMENTS: tuple[str, ...] = tuple(_MODULES)


def get_experiment(name: str) -> Experiment:
    """The :class:`Experiment` called ``name`` (its module is imported on first use)."""
    if name not in _MODULES:
        raise ValueError(f"Unknown experiment {name!r}; known: {', '.join(_MODULES)}.")
    return importlib.import_module(f"overparam_jax.experiments.{_MODULES[name]}").EXPERIMENT
