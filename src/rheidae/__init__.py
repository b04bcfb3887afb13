"""Rheidae: a residual model of neutrino fast-flavor instability (FFI) outcomes. From the
initial moments and the Box3D prediction (24 + 24 numbers) it predicts the final moments
(24): number densities and fluxes of 3 flavors of neutrinos and antineutrinos."""

__version__ = "0.1.0"
