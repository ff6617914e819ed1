"""overparam_jax: analyzing optimization of deep linear networks via trajectories.

The public API is every name re-exported here (``overparam_jax.__all__``) and the public
modules, each of which lists its own public names in ``__all__``:

* :mod:`~overparam_jax.networks` — params, the end-to-end matrix, inits, balancedness,
  the deficiency margin;
* :mod:`~overparam_jax.losses` — ℓp, whitened ℓ2, the overparameterized objective φ;
* :mod:`~overparam_jax.preconditioner` — P_W in closed form, as a Kronecker matrix, the
  single-output form, the autodiff velocity, the non-gradient-field witness;
* :mod:`~overparam_jax.dynamics` — step rules and :func:`simulate`; gradient descent and
  flow, the end-to-end update, optax optimizers;
* :mod:`~overparam_jax.sweeps` — one compiled program over seeds × learning rates × init
  stds × depths, sharded over devices and processes;
* :mod:`~overparam_jax.runner` — the chunked, checkpointed runner of every long computation;
* :mod:`~overparam_jax.theory` — the theorems' conditions, bounds and closed forms;
* :mod:`~overparam_jax.factorization` — deep matrix factorization [ACHL19]: completion and
  sensing losses, effective rank, the singular-value dynamics, the nuclear-norm baseline;
* :mod:`~overparam_jax.analysis` — reading curves: first hits, log–log slopes, moving averages, rounding;
* :mod:`~overparam_jax.datasets`, :mod:`~overparam_jax.checkpoint`,
  :mod:`~overparam_jax.results` — data, checkpoint files, results files;
* :mod:`overparam_jax.verify` — the registry of numerical checks (``overparam-jax verify``);
* :mod:`overparam_jax.experiments` — the papers' experiments (``overparam-jax reproduce``).

Modules whose names start with an underscore (``_validation``) are private.
"""

from overparam_jax.checkpoint import CheckpointMismatch
from overparam_jax.datasets import (
    MNIST,
    Whitened,
    load_gas_ethanol,
    load_mnist,
    standardize_columns,
    whiten,
)
from overparam_jax.dynamics import (
    RK4,
    EndToEndUpdate,
    Euler,
    GradientDescent,
    OptaxRule,
    Trajectory,
    end_to_end_descent,
    gradient_descent,
    gradient_flow,
    optax_descent,
)
from overparam_jax.factorization import (
    FactorizationDescent,
    MatrixCompletion,
    MatrixSensing,
    NuclearNormSolution,
    completion_loss,
    effective_rank,
    low_rank_target,
    nuclear_norm_completion,
    observation_mask,
    sensing_loss,
    sensing_measurements,
    singular_value_rates,
    unobserved_error,
)
from overparam_jax.losses import LossFn, lp_loss, overparameterized, whitened_l2_loss
from overparam_jax.networks import (
    Params,
    balanced_factorization,
    balancedness,
    deficiency_margin,
    end_to_end,
    init_balanced,
    init_gaussian,
    init_identity,
    layer_gradients,
    network_dims,
)
from overparam_jax.preconditioner import (
    end_to_end_field,
    end_to_end_velocity,
    field_jacobian,
    gradient_field_asymmetry,
    preconditioner_apply,
    preconditioner_eigenvalues,
    preconditioner_matrix,
    single_output_velocity,
)
from overparam_jax.runner import Progress
from overparam_jax.sweeps import SWEEP_AXES, SweepResult, pad_to_depth, sweep
from overparam_jax.theory import (
    Theorem1Conditions,
    Theorem2Conditions,
    aligned_flow_sigma,
    aligned_flow_time,
    descent_lemma_bound,
    iterations_to_reach,
    logistic_sigma,
    margin_probability_exact,
    theorem1_conditions,
    theorem1_loss_bound,
    theorem2_conditions,
    theorem2_probability_bound,
    wilson_interval,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointMismatch",
    "EndToEndUpdate",
    "Euler",
    "FactorizationDescent",
    "GradientDescent",
    "LossFn",
    "MNIST",
    "MatrixCompletion",
    "MatrixSensing",
    "NuclearNormSolution",
    "OptaxRule",
    "Params",
    "Progress",
    "RK4",
    "SWEEP_AXES",
    "SweepResult",
    "Theorem1Conditions",
    "Theorem2Conditions",
    "Trajectory",
    "Whitened",
    "__version__",
    "aligned_flow_sigma",
    "aligned_flow_time",
    "balanced_factorization",
    "balancedness",
    "completion_loss",
    "deficiency_margin",
    "descent_lemma_bound",
    "effective_rank",
    "end_to_end",
    "end_to_end_descent",
    "end_to_end_field",
    "end_to_end_velocity",
    "field_jacobian",
    "gradient_descent",
    "gradient_field_asymmetry",
    "gradient_flow",
    "init_balanced",
    "init_gaussian",
    "init_identity",
    "iterations_to_reach",
    "layer_gradients",
    "load_gas_ethanol",
    "load_mnist",
    "logistic_sigma",
    "low_rank_target",
    "lp_loss",
    "margin_probability_exact",
    "network_dims",
    "nuclear_norm_completion",
    "observation_mask",
    "optax_descent",
    "overparameterized",
    "pad_to_depth",
    "preconditioner_apply",
    "preconditioner_eigenvalues",
    "preconditioner_matrix",
    "sensing_loss",
    "sensing_measurements",
    "single_output_velocity",
    "singular_value_rates",
    "standardize_columns",
    "sweep",
    "theorem1_conditions",
    "theorem1_loss_bound",
    "theorem2_conditions",
    "theorem2_probability_bound",
    "unobserved_error",
    "whiten",
    "whitened_l2_loss",
    "wilson_interval",
]
