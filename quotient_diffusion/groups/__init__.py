"""Group actions on flat batches of point clouds: the interface and concrete groups.

See docs/groups.md for how to add a group and docs/theory.md for the mathematics.
"""

from .base import DEFAULT_REL_TOL, GroupAction, filtered_inverse
from .geometry import axis_angle_to_matrix, center, kabsch_rotation, random_rotations, rotate
from .se3 import SE3
from .so2 import SO2
from .so3 import SO3, inertia_tensor
from .translation import Translation

__all__ = [
    "GroupAction",
    "Translation",
    "SO3",
    "SE3",
    "SO2",
    "filtered_inverse",
    "inertia_tensor",
    "DEFAULT_REL_TOL",
    "center",
    "kabsch_rotation",
    "rotate",
    "axis_angle_to_matrix",
    "random_rotations",
    "get_group",
    "GROUPS",
]

#: the groups by name (``model.group`` in a training config): translations, rotations about the
#: origin, rigid motions, rotations about the z axis
GROUPS: dict[str, type[GroupAction]] = {"T3": Translation, "SO3": SO3, "SE3": SE3, "SO2": SO2}


def get_group(name: str) -> GroupAction:
    """Instantiate a group by name (case-insensitive): 'T3', 'SO3', 'SE3' or 'SO2' (about z)."""
    try:
        return GROUPS[name.upper()]()
    except KeyError:
        raise ValueError(f"unknown group {name!r}; choose one of {sorted(GROUPS)}") from None
