"""dmsps: scribble-supervised medical image segmentation (DMSPS, MedIA 2024)."""

__version__ = "0.1.0"
