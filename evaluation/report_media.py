"""Rollout clips for the HTML report: a few episodes per source and pattern from the kept
datasets (and from closed-loop evaluation videos, when the recipe records them), re-encoded as
small VP9 WebM files that every browser plays from a data URI, without a server.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation import display

log = logging.getLogger(__name__)

CLIP_CODECS = ("libvpx-vp9", "libvpx")  # VP9, else VP8: WebM that Chromium and Firefox decode
CLIP_OPTIONS = {"deadline": "realtime", "cpu-used": "8", "crf": "36", "b": "0"}
MAX_CLIP_FRAMES = 400  # 20 s at LIBERO's 20 Hz: longer episodes are cut


@dataclass
class Clip:
    """One encoded episode and what the report says about it."""

    group: str  # what the clip stands for: "DLR, pattern 0", "openvla O2O-RL n6"
    color: str
    caption: str
    webm: bytes


def encode_webm(frames: np.ndarray, fps: int = 20) -> bytes:
    """(T, H, W, 3) uint8 frames as a WebM; H and W padded to even sizes."""
    import av

    frames = np.asarray(frames, dtype=np.uint8)[:MAX_CLIP_FRAMES]
    t, h, w = frames.shape[:3]
    padded = np.zeros((t, h + h % 2, w + w % 2, 3), np.uint8)
    padded[:, :h, :w] = frames
    last_error: Exception | None = None
    for codec in CLIP_CODECS:
        buffer = io.BytesIO()
        try:
            with av.open(buffer, "w", format="webm") as container:
                stream = container.add_stream(codec, rate=fps, options=CLIP_OPTIONS)
                stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
                for frame in padded:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        container.mux(packet)
                container.mux(stream.encode())
            return buffer.getvalue()
        except Exception as err:  # noqa: BLE001 - try the next codec
            last_error = err
            log.warning("codec %s cannot encode a clip: %r", codec, err)
    raise RuntimeError(f"no WebM encoder among {CLIP_CODECS} in PyAV") from last_error


# --------------------------------------------------------------------------- kept datasets
def pick_episodes(meta: pd.DataFrame, per_group: int) -> pd.DataFrame:
    """Up to ``per_group`` episodes per pattern: successes first, one task after another."""
    picked = []
    for _, group in meta.groupby("pattern_id", sort=True):
        group = group.sort_values("episode_index")
        group = group.assign(rank=group.groupby(["success", "task_name"]).cumcount())
        group = group.sort_values(
            ["success", "rank", "episode_index"], ascending=[False, True, True]
        )
        picked.append(group.head(per_group))
    return pd.concat(picked) if picked else meta.head(0)


def _image_frames(root: Path, key: str, episode_index: int) -> np.ndarray:
    """An episode's frames from a dataset that stores images (PNG bytes) in its parquet."""
    from PIL import Image

    rows = []
    for path in sorted((root / "data").rglob("*.parquet")):
        df = pd.read_parquet(path, columns=["episode_index", "frame_index", key],
                             filters=[("episode_index", "==", episode_index)])  # fmt: skip
        rows.append(df)
    df = pd.concat(rows).sort_values("frame_index")
    return np.stack([np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))
                     for cell in df[key]])  # fmt: skip


def _video_frames(root: Path, key: str, episode_index: int) -> np.ndarray:
    """An episode's frames from a dataset that stores its images as video files."""
    import av
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata(f"local/{root.name}", root=root)
    episode = meta.episodes[episode_index]
    start, end = episode[f"videos/{key}/from_timestamp"], episode[f"videos/{key}/to_timestamp"]
    frames = []
    with av.open(str(root / meta.get_video_file_path(episode_index, key))) as container:
        stream = container.streams.video[0]
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= end - 1e-6:
                break
            if frame.time is not None and frame.time >= start - 1e-6:
                frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def episode_frames(root: Path, episode_index: int) -> np.ndarray:
    """The agentview frames of one episode of one of our LeRobot datasets."""
    import json

    from generation.data.schema import IMAGE_KEY

    features = json.loads((root / "meta" / "info.json").read_text())["features"]
    if features[IMAGE_KEY]["dtype"] == "video":
        return _video_frames(root, IMAGE_KEY, episode_index)
    return _image_frames(root, IMAGE_KEY, episode_index)


def dataset_clips(roots: Mapping[str, Path], per_group: int = 2) -> list[Clip]:
    """Up to ``per_group`` clips per source and pattern (``roots``: source -> dataset)."""
    from generation.data.reader import read_episode_meta

    clips = []
    for source in display.ordered(roots):
        root = Path(roots[source])
        for row in pick_episodes(read_episode_meta(root), per_group).itertuples():
            pattern = int(row.pattern_id)
            group = display.source_label(source)
            if pattern >= 0:
                group += f", {display.pattern_label(pattern)}"
            frames = episode_frames(root, int(row.episode_index))
            outcome = "success" if row.success else "failure"
            caption = (f"{row.suite} task {row.task_index}, init state {row.init_state_index}: "
                       f"{outcome}, {len(frames)} steps")  # fmt: skip
            color = display.pattern_color(pattern) if pattern >= 0 else display.source_color(source)
            clips.append(Clip(group, color, caption, encode_webm(frames)))
    log.info("encoded %d dataset clips", len(clips))
    return clips


# --------------------------------------------------------------------------- evaluation videos
def _decode_mp4(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _outcome(episodes_dir: Path, video: Path) -> str:
    """ "success" or "failure" from the evaluation's episode cache, "" when not found."""
    import json

    task, seed, init = video.stem.split("_")  # task<i>_seed<s>_init<k>, as closed_loop names it
    for cache in sorted(episodes_dir.glob(f"{task}_{seed}*.jsonl")):
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            if f"init{row['init_state_index']}" == init:
                return "success" if row["success"] else "failure"
    return ""


def evaluation_clips(evaluation_dir: Path, per_policy: int = 1, max_clips: int = 24) -> list[Clip]:
    """Closed-loop episodes recorded by the evaluation (``videos/<arch>/<source>/n<size>/
    <suite>/*.mp4`` under ``evaluation_dir``), ``per_policy`` of each, re-encoded."""
    videos_dir = Path(evaluation_dir) / "videos"
    by_policy: dict[tuple[str, ...], list[Path]] = {}
    for path in sorted(videos_dir.glob("*/*/*/*/*.mp4")):
        by_policy.setdefault(path.relative_to(videos_dir).parts[:4], []).append(path)
    clips = []
    for (arch, source, size, suite), paths in by_policy.items():
        for path in paths[:per_policy]:
            if len(clips) >= max_clips:
                return clips
            group = f"{arch} {display.source_label(source)} {size}"
            outcome = _outcome(
                Path(evaluation_dir) / "episodes" / arch / source / size / suite, path
            )
            caption = f"{display.suite_label(suite)}, {path.stem.replace('_', ' ')} {outcome}"
            clips.append(Clip(group, display.source_color(source), caption,
                              encode_webm(_decode_mp4(path))))  # fmt: skip
    return clips
