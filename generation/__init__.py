"""DLR-Bench generation: LIBERO envs, demonstrators, Discover/Learn/Reinforce, datasets."""

import logging


class _ShortTorchcodecWarning(logging.Filter):
    """lerobot logs a ~100-line traceback when torchcodec cannot find FFmpeg; say it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "torchcodec" in str(record.msg):
            record.msg, record.args = "torchcodec unavailable here (no FFmpeg); lerobot uses pyav", ()
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("lerobot.utils.import_utils").addFilter(_ShortTorchcodecWarning())
