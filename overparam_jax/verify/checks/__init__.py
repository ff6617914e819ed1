"""Check modules; importing this package registers every check, in this order."""

from overparam_jax.verify.checks import foundation  # noqa: F401
from overparam_jax.verify.checks import end_to_end  # noqa: F401
from overparam_jax.verify.checks import trajectories  # noqa: F401
from overparam_jax.verify.checks import closed_form  # noqa: F401
from overparam_jax.verify.checks import convergence  # noqa: F401
from overparam_jax.verify.checks import necessity  # noqa: F401
from overparam_jax.verify.checks import probability  # noqa: F401
from overparam_jax.verify.checks import landscape  # noqa: F401
from overparam_jax.verify.checks import acceleration  # noqa: F401
