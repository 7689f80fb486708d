"""Synthetic datasets made in code, for the demo, the tests and users without data.

``cardiac``: short-axis cine-MRI-like stacks in the dmsps layout (2D demo).
``abdomen``: abdominal CT in the official WORD layout (``imagesTr/word_0001.nii.gz`` ...),
the source for ``dmsps import word``.
``brain``: four-channel brain tumour MRI in the official BraTS 2020 layout
(``BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz`` ...), the source for
``dmsps import brats2020``.

``shapes`` holds what the 3D generators share: argument checks, an output folder that is
only ever cleared of what a generator wrote, smooth random fields, and a ``Scene`` that
composites analytic shapes (signed distances in mm) into a volume and its label map.
"""
