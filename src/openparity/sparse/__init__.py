"""CLOSE (architecture): dynamic sparse training (RigL, SET, static masks, gradual magnitude
pruning) as weight parametrizations on any PyTorch model.

Needs PyTorch (`pip install "openparity[train]"`); nothing here is imported by `import openparity`.
"""

from openparity.sparse.masks import is_masked, with_masks_applied
from openparity.sparse.sparsifier import (
    METHODS,
    DynamicSparsity,
    SparseConfig,
    SparseError,
    UpdateRecord,
)

__all__ = [
    "METHODS",
    "DynamicSparsity",
    "SparseConfig",
    "SparseError",
    "UpdateRecord",
    "is_masked",
    "with_masks_applied",
]
