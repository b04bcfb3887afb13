"""VoxelFlex: temperature-aware 3D CNN for per-residue protein flexibility (RMSF)."""

__version__ = "0.1.0"
