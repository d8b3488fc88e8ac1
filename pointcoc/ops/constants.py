"""Values shared by the implementations of an op: each imports them from here, none from another."""

from __future__ import annotations

# Starting value of FPS's running minimum distance, as in pointnet2_ops and the official torch loop; the
# torch path and the Triton kernel both start from it (their indices agree exactly).
INITIAL_DISTANCE = 1e10
