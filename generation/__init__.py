"""DLR-Bench generation: LIBERO envs, demonstrators, Discover/Learn/Reinforce, datasets."""

import logging


class _DropTorchcodecTraceback(logging.Filter):
    """lerobot logs a ~100-line traceback whenever torchcodec cannot find a system FFmpeg and it
    falls back to pyav. We always read with ``video_backend="pyav"``, so that is expected: drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "torchcodec" not in str(record.msg)


logging.getLogger("lerobot.utils.import_utils").addFilter(_DropTorchcodecTraceback())
