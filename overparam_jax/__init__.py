"""overparam_jax: analyzing optimization of deep linear networks via trajectories.

The public API; every name is defined in a private-by-convention module listed in
../shared/STYLE.md ("Layout") and re-exported here.
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
    Trajectory,
    end_to_end_descent,
    gradient_descent,
    gradient_flow,
    optax_descent,
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
from overparam_jax.sweeps import SWEEP_AXES, SweepResult, pad_to_depth, sweep

__version__ = "0.1.0"

__all__ = [
    "CheckpointMismatch",
    "LossFn",
    "MNIST",
    "Params",
    "SWEEP_AXES",
    "SweepResult",
    "Trajectory",
    "Whitened",
    "__version__",
    "balanced_factorization",
    "balancedness",
    "deficiency_margin",
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
    "layer_gradients",
    "load_gas_ethanol",
    "load_mnist",
    "lp_loss",
    "network_dims",
    "optax_descent",
    "overparameterized",
    "pad_to_depth",
    "preconditioner_apply",
    "preconditioner_eigenvalues",
    "preconditioner_matrix",
    "single_output_velocity",
    "standardize_columns",
    "sweep",
    "whiten",
    "whitened_l2_loss",
]
