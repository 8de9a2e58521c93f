"""CLOSE (architecture): dynamic sparse training (RigL, SET, static masks, gradual magnitude
pruning) as weight parametrizations on any PyTorch model.

Needs PyTorch (`pip install "openparity[train]"`). The names below load on first use, so the
CLI can read `openparity.sparse.options` without importing torch.
"""

from __future__ import annotations

from openparity.lazy_exports import lazy_getattr

_HOMES = {
    "METHODS": "sparsifier",
    "DynamicSparsity": "sparsifier",
    "SparseConfig": "sparsifier",
    "SparseError": "sparsifier",
    "SparsityCallback": "trainer_callback",
    "UpdateRecord": "sparsifier",
    "is_masked": "masks",
    "with_masks_applied": "masks",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_getattr(__name__, _HOMES)
