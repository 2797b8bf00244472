"""Write rollout frames as mp4 with PyAV (libx264, falling back to mpeg4)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from generation.data.schema import FPS
from generation.manifest import atomic_write

log = logging.getLogger(__name__)
CODECS = ("libx264", "mpeg4")


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = FPS) -> Path:
    """Encode (H, W, 3) uint8 frames to ``path`` atomically; H and W are padded to even sizes."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    even_h, even_w = height + height % 2, width + width % 2
    last_error: Exception | None = None
    for codec in CODECS:
        try:
            # the container format from the real suffix: the temp name ends in ".tmp-<pid>"
            with atomic_write(path) as tmp, av.open(str(tmp), "w", format=path.suffix[1:]) as out:
                stream = out.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
                for frame in frames:
                    padded = np.zeros((even_h, even_w, 3), np.uint8)
                    padded[:height, :width] = frame
                    for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
            return path
        except Exception as err:  # noqa: BLE001 - try the next codec
            last_error = err
            log.warning("codec %s failed for %s: %r", codec, path, err)
    raise RuntimeError(f"could not write {path} with any of {CODECS}") from last_error
