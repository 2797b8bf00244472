"""Import real LIBERO demonstrations into our dataset schema (ARCHITECTURE.md), ``source="imported"``.

Two input formats, one module each:

- LIBERO's official hdf5 demo files: :func:`generation.data.import_hdf5.import_libero_hdf5`.
- LeRobot-format LIBERO datasets on local disk:
  :func:`generation.data.import_lerobot.import_lerobot_dataset`.

What both share (the error type, task lookup, image fitting) is in
:mod:`generation.data.import_common`. This module re-exports the public names of all three.
"""

from generation.data.import_common import (
    UNKNOWN_SUITE,
    DatasetImportError,
    fit_images,
    normalise_language,
    task_by_name,
    tasks_by_language,
)
from generation.data.import_hdf5 import import_libero_hdf5
from generation.data.import_lerobot import DEFAULT_KEY_MAP, import_lerobot_dataset

__all__ = [
    "DEFAULT_KEY_MAP",
    "UNKNOWN_SUITE",
    "DatasetImportError",
    "fit_images",
    "import_lerobot_dataset",
    "import_libero_hdf5",
    "normalise_language",
    "task_by_name",
    "tasks_by_language",
]
