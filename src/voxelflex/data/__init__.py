"""Data: URIs, inputs (voxels, RMSF CSV, splits), sample metadata, the streaming loader."""
