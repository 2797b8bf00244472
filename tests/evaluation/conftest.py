import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _tmp_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep HOME and Hugging Face caches in a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "hf_datasets"))
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home / "lerobot"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")


# --------------------------------------------------------------------------- a fake smoke run
SMOKE_TASK = "pick_up_the_black_bowl_between_the_plate_and_the_ramekin_and_place_it_on_the_plate"
SMOKE_SIZES = {"none": [0], "dlr": [3, 6], "o2o": [3, 6]}  # smoke.yaml: n3 and full (6)


def _frames(path: np.ndarray, color: tuple[int, int, int], size: int = 32) -> np.ndarray:
    """A coloured square following the path's x, y over a grey gradient: frames that show motion."""
    frames = np.zeros((len(path), size, size, 3), np.uint8)
    frames[:] = np.linspace(40, 120, size, dtype=np.uint8)[None, :, None, None]
    for t, (x, y) in enumerate(path[:, :2]):
        cx = int(np.clip((x + 1) / 2 * (size - 6), 0, size - 6))
        cy = int(np.clip((y + 1) / 2 * (size - 6), 0, size - 6))
        frames[t, cy : cy + 6, cx : cx + 6] = color
    return frames


def write_fake_dataset(
    root: Path, source: str, n_patterns: int, seed: int, episodes: int = 6, image_size: int = 32
) -> None:
    """Episodes whose eef paths differ by pattern (straight lines in different directions)."""
    from generation.data.episode import Episode
    from generation.data.schema import DatasetSpec
    from generation.data.writer import write_episodes

    rng = np.random.default_rng(seed)
    out = []
    for i in range(episodes):
        pattern = i % n_patterns
        t = 12 + i % 3
        direction = np.array([1.0, -1.0 if pattern % 2 else 1.0, 0.5 * (pattern + 1)])
        states = np.zeros((t, 8), np.float32)
        states[:, :3] = np.linspace(0, 0.8, t)[:, None] * direction + rng.normal(0, 0.01, (t, 3))
        color = (220, 40, 40) if source == "dlr" else (40, 90, 220)
        out.append(
            Episode(
                suite="libero_object", task_index=0, task_name=SMOKE_TASK, language="pick up the bowl",
                init_state=np.zeros(5), actions=np.zeros((t, 7)), states=states,
                env_states=np.zeros((t, 84)), success=i % 2 == 0, source=source, init_state_index=i,
                pattern_id=pattern if source == "dlr" else -1,
                images={"image": _frames(states[:, :3], color, image_size)},
            )
        )  # fmt: skip
    write_episodes(out, root, spec=DatasetSpec(image_size=image_size), progress=False)


def _manifest(d: Path, result: dict, seconds: float, config: dict | None = None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    m = {"status": "complete", "result": result, "wall_time_s": seconds, "config": config or {},
         "code_version": "abc1234", "stage": d.name}  # fmt: skip
    (d / "manifest.json").write_text(json.dumps(m))


def _curves(d: Path, rng: np.random.Generator, iterations: int = 4) -> None:
    from generation.dlr.ppo import CURVE_COLUMNS

    rows = []
    for i in range(iterations):
        rows.append({"iteration": i, "global_step": 256 * (i + 1), "episodes": 2,
                     "success_rate": rng.choice([0.0, 0.5]), "episode_return": rng.normal(1, 0.3),
                     "kl_to_init": 0.01 * i, "entropy": 2 - 0.1 * i, "approx_kl": 0.01,
                     "value_loss": 0.5, "bonus": 0.0, "wall_s": 10.0 * (i + 1)})  # fmt: skip
    pd.DataFrame(rows, columns=CURVE_COLUMNS).to_csv(d / "curves.csv", index=False)


def make_smoke_like_run(run: Path, successes: int = 0) -> Path:
    """A run folder shaped like smoke.yaml's: 1 task, openvla, none / DLR / O2O at sizes 3 and 6,
    2 closed-loop episodes per policy (``successes`` of them succeed), held-out action error,
    diversity, generation manifests with PPO curves, and tiny kept datasets. No model, no env."""
    from evaluation.stats import with_rates

    run.mkdir(parents=True, exist_ok=True)
    (run / "evaluation").mkdir(exist_ok=True)
    rows, offline = [], []
    for source, sizes in SMOKE_SIZES.items():
        for size in sizes:
            rows.append(dict(arch="openvla", source=source, size=size, suite="libero_spatial",
                             task=SMOKE_TASK, seed=0, episodes=2, successes=successes))  # fmt: skip
            mse = {"none": 0.45, "dlr": 0.10, "o2o": 0.12}[source] + 0.01 * (size == 3)
            offline.append(dict(arch="openvla", source=source, size=size, suite="libero_spatial",
                                task=0, episodes=2, frames=200, action_mse=mse, action_mse_se=0.02,
                                gripper_agreement=0.8))  # fmt: skip
    with_rates(pd.DataFrame(rows)).to_parquet(run / "evaluation" / "results.parquet")
    pd.DataFrame(offline).to_parquet(run / "evaluation" / "offline.parquet")
    diversity = []
    for source, scale in (("demo", 1.4), ("o2o", 1.0), ("dlr", 1.2)):
        for metric, value in (("mean_pairwise_distance", 0.1), ("final_state_variance", 0.004),
                              ("direction_variance", 0.3), ("path_length_variance", 0.02),
                              ("mean_pairwise_dtw", 4.0), ("state_coverage", 60.0)):  # fmt: skip
            diversity.append(
                dict(source=source, task=SMOKE_TASK, metric=metric, value=value * scale)
            )
    pd.DataFrame(diversity).to_parquet(run / "evaluation" / "diversity.parquet")

    rng = np.random.default_rng(0)
    t = run / "generation" / "libero_object" / "0"
    _manifest(t / "demos", {"episodes": 12}, 20.0)
    _manifest(t / "discover", {"episode_nmi": 0.8, "episode_ari": 0.7, "pattern_sizes": [4, 4, 4]}, 2.0)  # fmt: skip
    learn = {f"success_pattern_{k}": 0.5 for k in range(3)} | {"success_o2o": 0.0, "separation_ratio": 1.3}  # fmt: skip
    _manifest(t / "learn", learn, 30.0, {"learn": {"eval_episodes": 2}})
    rollouts: dict = {"dlr": {}, "o2o": {}}
    for k in range(3):
        _manifest(t / "reinforce" / "dlr" / f"pattern_{k}", {}, 40.0)
        _curves(t / "reinforce" / "dlr" / f"pattern_{k}", rng)
        rollouts["dlr"][str(k)] = {"attempted": 2, "succeeded": 1, "success_rate": 0.5, "kept": 2}
    _manifest(t / "reinforce" / "o2o", {}, 120.0)
    _curves(t / "reinforce" / "o2o", rng, iterations=12)
    rollouts["o2o"]["None"] = {"attempted": 6, "succeeded": 3, "success_rate": 0.5, "kept": 6}
    for source, result in rollouts.items():
        _manifest(t / "rollouts" / source, result, 30.0)
    write_fake_dataset(run / "datasets" / "dlr" / "full", "dlr", n_patterns=3, seed=0)
    write_fake_dataset(run / "datasets" / "o2o" / "full", "o2o", n_patterns=1, seed=1)
    (run / "recipe.yaml").write_text(
        (Path(__file__).parents[2] / "benchmarks" / "recipes" / "smoke.yaml").read_text()
    )
    return run


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke-shaped run folder (see :func:`make_smoke_like_run`); render it in a copy."""
    return make_smoke_like_run(tmp_path_factory.mktemp("smoke") / "smoke")
