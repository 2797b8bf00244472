"""A gymnasium-style wrapper around one LIBERO task.

Observations are the schema's vectors (``state``: eef pos, eef axis-angle, gripper qpos;
``env_state``: object poses and articulated joint positions, zero-padded) plus, when cameras
are asked for, upright uint8 images. ``terminated`` is task success (LIBERO's goal predicates);
``truncated`` is our own horizon, because LIBERO's horizon never sets ``done``.

Two rendering modes:
- ``fast``: the cameras asked for only, MSAA, shadows and reflections off, no simulator
  rebuild on reset, and visual meshes simplified below half a pixel (``EnvConfig.mesh_cell``):
  the same scene, without shadows (keep one mode per study).
- ``faithful``: LIBERO's defaults (MSAA on, hard reset on every ``reset``).
Physics is the same in both, so an episode (init state + actions) replays identically.
State-only envs step lean by default (``EnvConfig.lean``, ``lean.py``): LIBERO's control step
without its per-substep overhead, bit-identical to LIBERO's own ``env.step``.
LIBERO re-places fixtures (cabinets, stoves) at random on every reset; here they keep one pose
per task (see ``_pin_fixtures``), so an init state fixes the whole scene.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

from generation.data.schema import ACTION_DIM, ENV_STATE_DIM
from generation.envs.suites import DEFAULT_HORIZON, TaskSpec, get_task, init_states

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

log = logging.getLogger(__name__)

CAMERAS = {"agentview": "image", "robot0_eye_in_hand": "wrist_image"}
SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32)
RENDER_MODES = ("fast", "faithful")
FIXTURE_SEED = 0  # fixtures (cabinets, stoves, racks) are placed with this seed, once per task


def simplify_mesh(model, mesh_id: int, cell: float) -> tuple[int, int]:
    """Vertex clustering of one mesh of a compiled ``mujoco.MjModel``, in place.

    Vertices in one ``cell``-sized voxel collapse onto the first of them; faces that become
    degenerate or duplicate are dropped, and the survivors keep their normals and texture
    coordinates. Only the face list shrinks (``mesh_face*`` in place, ``mesh_facenum``): vertex
    positions stay, so geometry moves by less than a cell. Returns (faces before, after).
    """
    adr, num = int(model.mesh_faceadr[mesh_id]), int(model.mesh_facenum[mesh_id])
    vadr, vnum = int(model.mesh_vertadr[mesh_id]), int(model.mesh_vertnum[mesh_id])
    if num == 0 or cell <= 0:
        return num, num
    voxel = np.floor(model.mesh_vert[vadr : vadr + vnum] / cell).astype(np.int64)
    voxel -= voxel.min(axis=0)
    key = (voxel[:, 0] << 42) | (voxel[:, 1] << 21) | voxel[:, 2]  # meshes span < 2**21 cells
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    faces = first[inverse.ravel()][model.mesh_face[adr : adr + num]]
    a, b, c = faces.T
    alive = np.flatnonzero((a != b) & (b != c) & (a != c))
    ordered = np.sort(faces[alive], axis=1)
    _, unique = np.unique(ordered, axis=0, return_index=True)
    keep = alive[np.sort(unique)]
    k = len(keep)
    model.mesh_face[adr : adr + k] = faces[keep]
    model.mesh_facenormal[adr : adr + k] = model.mesh_facenormal[adr : adr + num][keep]
    if model.mesh_texcoordnum[mesh_id] > 0:
        model.mesh_facetexcoord[adr : adr + k] = model.mesh_facetexcoord[adr : adr + num][keep]
    model.mesh_facenum[mesh_id] = k
    return num, k


def _centre_of_range(low=0.0, high=1.0, size=None):
    """``np.random.uniform`` with every draw at the middle of its range."""
    mid = 0.5 * (np.asarray(low, dtype=float) + np.asarray(high, dtype=float))
    return np.broadcast_to(mid, size).copy() if size is not None else mid


def lean_default() -> bool:
    value = os.environ.get("DLR_LEAN", "1")
    if value not in ("0", "1"):
        raise ValueError(f"DLR_LEAN={value!r}: set it to 1 (lean stepping, the default) or 0")
    return value == "1"


@dataclass
class EnvConfig:
    """How to build a :class:`LiberoEnv`.

    cameras: which cameras to render (empty: state only, the fastest).
    image_size: square image side in pixels.
    render_mode: ``fast`` or ``faithful`` (see module docstring).
    mesh_cell: fast mode only: visual-mesh vertices closer than this (metres) are merged before
        rendering (vertex clustering; collision meshes and physics are untouched). ``None``:
        half a pixel at 1 m from the agentview camera (``0.5 / image_size``, 3.9 mm at 128 px),
        or 0 when the wrist camera is rendered (its subjects are ~10x closer); 0: full meshes.
    horizon: steps before truncation; ``None`` takes the suite's default.
    settle_steps: no-op steps after setting the init state, so objects come to rest.
    lean: state-only envs (no cameras) step through ``lean.LeanStepper``, bit-identical to
        LIBERO's step at ~1/3 of its cost; False steps through LIBERO's own ``env.step``.
        Envs with cameras always take LIBERO's step (their observables render). The default
        reads ``DLR_LEAN`` (``0`` turns it off for a whole run, worker processes included).
    """

    cameras: tuple[str, ...] = ()
    image_size: int = 128
    render_mode: str = "fast"
    mesh_cell: float | None = None
    horizon: int | None = None
    settle_steps: int = 10
    env_state_dim: int = ENV_STATE_DIM
    lean: bool = field(default_factory=lean_default)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.cameras = tuple(self.cameras)
        bad = [c for c in self.cameras if c not in CAMERAS]
        if bad:
            raise ValueError(f"unknown camera(s) {bad}; valid: {list(CAMERAS)}")
        if self.render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {self.render_mode!r}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.mesh_cell is not None and not self.mesh_cell >= 0:
            raise ValueError(
                f"mesh_cell must be >= 0 metres (0: full meshes), got {self.mesh_cell}"
            )

    def mesh_cell_m(self) -> float:
        """The vertex-clustering cell fast mode uses, in metres (0: meshes left whole)."""
        if self.render_mode != "fast" or not self.cameras:
            return 0.0
        if self.mesh_cell is not None:
            return float(self.mesh_cell)
        return 0.0 if "robot0_eye_in_hand" in self.cameras else 0.5 / self.image_size


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """robosuite's (x, y, z, w) quaternion to an axis-angle vector, as in LIBERO datasets."""
    q = np.asarray(quat_xyzw, dtype=np.float64).copy()
    q[3] = np.clip(q[3], -1.0, 1.0)
    den = math.sqrt(max(1.0 - q[3] * q[3], 0.0))
    if den < 1e-8:
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(q[3]) / den


class LiberoEnv:
    """One LIBERO task. ``reset`` takes an init-state index, a seed, or a raw sim state."""

    def __init__(self, task: TaskSpec | tuple[str, int | str], config: EnvConfig | None = None):
        self.task = task if isinstance(task, TaskSpec) else get_task(*task)
        self.config = config or EnvConfig()
        self.horizon = self.config.horizon or DEFAULT_HORIZON[self.task.suite]
        self._init_states: np.ndarray | None = None
        self._done = True
        self.t = 0
        self._make()

    # ----------------------------------------------------------------- construction
    def _make(self) -> None:
        from libero.libero.envs import OffScreenRenderEnv
        from libero.libero.envs.env_wrapper import ControlEnv

        from generation.envs.lean import ContactCheck, LeanStepper, lean_unsupported

        cfg = self.config
        kwargs = dict(
            bddl_file_name=self.task.bddl_file,
            horizon=10**7,  # we truncate ourselves; LIBERO's horizon only raises
            ignore_done=True,
            hard_reset=cfg.render_mode == "faithful",
            camera_heights=cfg.image_size,
            camera_widths=cfg.image_size,
        )
        if cfg.cameras:
            kwargs["camera_names"] = list(cfg.cameras)
            self.raw = OffScreenRenderEnv(**kwargs)
        else:
            kwargs.update(use_camera_obs=False, has_offscreen_renderer=False, camera_names=[])
            self.raw = ControlEnv(**kwargs)
        self._lean = None
        if cfg.lean and not cfg.cameras:
            reason = lean_unsupported(self.raw.env)
            if reason is None:
                self._lean = LeanStepper(self.raw.env)
                # LIBERO's predicates call env.check_contact: the instance attribute shadows it
                self.raw.env.check_contact = ContactCheck(self.raw.env)
            else:
                log.warning("%s steps through LIBERO's env.step: %s", self.task.key, reason)
        self._joint_ids: list[int] | None = None
        self._object_index_of = None  # the sim whose ids _object_index_ids holds
        self._object_index_ids: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
        self._simplified = None  # the MjModel whose visual meshes were simplified
        self._fixture_pose: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def lean(self) -> bool:
        """Whether this env steps through the lean path (``EnvConfig.lean``, no cameras)."""
        return self._lean is not None

    def _raw_step(self, action: np.ndarray) -> dict:
        """One LIBERO control step; returns LIBERO's observations (the proprio ones when lean)."""
        if self._lean is not None:
            return self._lean.step(action)
        return self.raw.step(action)[0]

    @property
    def sim(self):
        """The current MuJoCo sim (LIBERO rebuilds it on hard resets: never cache it)."""
        return self.raw.env.sim

    @property
    def language(self) -> str:
        return self.task.language

    def init_state(self, index: int) -> np.ndarray:
        if self._init_states is None:
            self._init_states = init_states(self.task.suite, self.task.index)
        if not 0 <= index < len(self._init_states):
            raise ValueError(
                f"init_state_index {index} out of range: {self.task.key} has {len(self._init_states)} init states"
            )
        return self._init_states[index]

    # ----------------------------------------------------------------- gym API
    def reset(
        self,
        init_state_index: int | None = None,
        seed: int | None = None,
        init_state: np.ndarray | None = None,
    ) -> tuple[dict, dict]:
        """Reset to a fixed init state (by index), a raw sim state, or a seeded random layout.

        ``info['init_state']`` is the sim state the episode starts from (before settling):
        storing it with the actions makes the episode replayable.
        """
        self._own_gl_context()
        if seed is not None:
            self.raw.seed(int(seed))
            np.random.seed(int(seed))
        # fast mode renders only the first observation: LIBERO's reset, set_init_state and
        # every settle step would each render the cameras (~12 frames thrown away per episode)
        fast = self.config.render_mode == "fast" and bool(self.config.cameras)
        self._render_cameras(not fast)
        self.raw.reset()
        self._pin_fixtures()
        if fast:
            self._fast_rendering()
        if init_state is None and init_state_index is not None:
            init_state = self.init_state(int(init_state_index))
        self._clear_carried_state()
        if init_state is not None:
            raw_obs = self.raw.set_init_state(np.asarray(init_state, dtype=np.float64))
        else:
            raw_obs = self.raw.env._get_observations(force_update=True)
        start_state = self.raw.get_sim_state().copy()
        for _ in range(self.config.settle_steps):
            raw_obs = self._raw_step(SETTLE_ACTION)
        if fast:  # render the first images now, updating the camera observables alone:
            # a forced update of all observables shifted the next steps' physics by ~1e-4
            # (measured), which would break exact replay against state-only envs
            self._render_cameras(True)
            raw_obs = dict(raw_obs)
            for cam in self.config.cameras:
                camera = self.raw.env._observables[f"{cam}_image"]
                camera.update(0.0, {}, force=True)
                raw_obs[f"{cam}_image"] = camera.obs
        self.t = 0
        self._done = False
        info = {"init_state": start_state, "init_state_index": init_state_index, "seed": seed}
        return self._obs(raw_obs), info

    def _pin_fixtures(self) -> None:
        """Put the fixtures (cabinets, stoves, racks) where they go for this task, every reset.

        LIBERO re-places fixtures at random on every reset, in ``model.body_pos``, which is not
        part of the sim state: two resets to one init state put the wooden cabinet of
        LIBERO-Spatial task 0 up to 1.3 cm and 0.02 rad apart (measured), so one episode's
        images changed from one render to the next and a replay that touches a fixture could
        diverge. Their pose is now taken once from LIBERO's own placement sampler at the centre of
        its ranges (``FIXTURE_SEED`` for any other draw), the same in every process, and restored
        after every reset.
        """
        env = self.raw.env
        fixtures = getattr(env, "fixtures_dict", {})
        sampler = getattr(env, "placement_initializer", None)
        if not fixtures or sampler is None:
            return
        if self._fixture_pose is None:
            rng_state = np.random.get_state()
            np.random.seed(FIXTURE_SEED)
            uniform = np.random.uniform
            # the centre of every range LIBERO samples from: init states were recorded with
            # fixtures jittered around it, so the centre is the best single guess
            np.random.uniform = _centre_of_range
            try:
                placements = sampler.sample()
            except Exception as err:  # noqa: BLE001 - centred objects can collide: seeded
                log.debug("centred fixture placement failed (%r): seeded sample instead", err)
                np.random.uniform = uniform
                placements = sampler.sample()
            finally:
                np.random.uniform = uniform
                np.random.set_state(rng_state)
            self._fixture_pose = {
                fixtures[name].root_body: (np.array(pos), np.array(quat))
                for name, (pos, quat, _) in placements.items()
                if name in fixtures
            }
        model = self.sim.model
        for body, (pos, quat) in self._fixture_pose.items():
            body_id = model.body_name2id(body)
            model.body_pos[body_id] = pos
            model.body_quat[body_id] = quat
        self.sim.forward()

    def _own_gl_context(self) -> None:
        """Make this env's GL context the current one before anything renders or frees.

        robosuite renders into whatever context is current and makes one current only when it
        creates it, so with two rendering envs in a process the older one drew with the newer
        one's meshes and textures (measured: a LIBERO-Object scene rendered as parts of a
        LIBERO-Spatial one, mean pixel error 28) and closing one left the other without a
        context. Evaluation workers and the dataset writer keep several envs per process.
        """
        if not self.config.cameras:
            return
        ctx = getattr(self.sim, "_render_context_offscreen", None)
        if ctx is not None:
            ctx.gl_ctx.make_current()

    def _fast_rendering(self) -> None:
        """MSAA, shadows, reflections and skybox off: ~2x faster software rendering, same scene."""
        import mujoco

        self.sim.model.vis.quality.offsamples = 0
        ctx = getattr(self.sim, "_render_context_offscreen", None)
        if ctx is not None:
            for flag in (
                mujoco.mjtRndFlag.mjRND_SHADOW,
                mujoco.mjtRndFlag.mjRND_REFLECTION,
                mujoco.mjtRndFlag.mjRND_SKYBOX,
            ):
                ctx.scn.flags[flag] = 0
        self._simplify_meshes(ctx)

    def _simplify_meshes(self, ctx) -> None:
        """Cluster the visual meshes' vertices (once per model) and re-upload them to the GL
        context. Software rendering here is vertex-bound: 308k faces per frame on LIBERO-Object
        took ~57 ms at 32 px and at 128 px alike (measured); 3.9 mm cells keep ~1/3 of them."""
        import mujoco

        model = self.sim.model._model
        cell = self.config.mesh_cell_m()
        if cell <= 0 or self._simplified is model:
            return
        visual, colliding = set(), set()
        for g in np.flatnonzero(model.geom_type == mujoco.mjtGeom.mjGEOM_MESH):
            collides = model.geom_contype[g] or model.geom_conaffinity[g]
            (colliding if collides else visual).add(int(model.geom_dataid[g]))
        meshes = sorted(visual - colliding)  # a mesh that also collides is left whole
        for mesh_id in meshes:
            simplify_mesh(model, mesh_id, cell)
        if ctx is not None:  # a context made later uploads the simplified meshes itself
            ctx.gl_ctx.make_current()
            for mesh_id in meshes:
                mujoco.mjr_uploadMesh(model, ctx.con, mesh_id)
        self._simplified = model

    def _render_cameras(self, on: bool) -> None:
        """Switch the camera observables (the renders) on or off; physics is unaffected."""
        for cam in self.config.cameras:
            self.raw.env.modify_observable(f"{cam}_image", "enabled", on)

    def _clear_carried_state(self) -> None:
        """Zero what a soft reset would carry over from the last episode.

        A hard reset rebuilds these; without clearing them a soft reset drifts ~1 mm from it,
        which would break exact replay. The gripper's smoothed command is the main culprit.
        """
        for robot in self.raw.robots:
            robot.gripper.current_action = np.zeros(robot.gripper.dof)
        data = self.sim.data
        for name in ("qacc_warmstart", "ctrl", "act", "qfrc_applied", "xfrc_applied"):
            arr = getattr(data, name, None)
            if arr is not None and np.size(arr):
                arr[...] = 0

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {action.shape}")
        self._own_gl_context()
        raw_obs = self._raw_step(np.clip(action, -1.0, 1.0))
        self.t += 1
        success = bool(self.raw.check_success())
        truncated = self.t >= self.horizon and not success
        self._done = success or truncated
        return self._obs(raw_obs), float(success), success, truncated, {"success": success}

    def close(self) -> None:
        try:
            self._own_gl_context()  # MuJoCo frees its GL objects in the current context
            self.raw.close()
        except Exception:  # noqa: BLE001 - EGL teardown errors at exit are harmless
            pass

    # ----------------------------------------------------------------- observations
    def proprio(self, raw_obs: dict) -> np.ndarray:
        return np.concatenate(
            [
                raw_obs["robot0_eef_pos"],
                quat_to_axis_angle(raw_obs["robot0_eef_quat"]),
                raw_obs["robot0_gripper_qpos"],
            ]
        ).astype(np.float32)

    def _articulated_joint_ids(self) -> list[int]:
        if self._joint_ids is None:
            m = self.sim.model
            ids = []
            for j in range(m.njnt):
                name = m.joint_id2name(j) or ""
                if m.jnt_type[j] in (2, 3) and not name.startswith(("robot0_", "gripper0_")):
                    ids.append(j)
            self._joint_ids = ids
        return self._joint_ids

    def _object_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Body ids of the objects (scene order) and qpos addresses of the articulated joints,
        looked up once per sim (LIBERO builds a new one on hard resets)."""
        sim = self.sim
        if self._object_index_of is not sim:
            env = self.raw.env
            bodies = np.array([env.obj_body_id[name] for name in env.objects_dict], dtype=np.intp)
            joints = self._articulated_joint_ids()
            qpos_adr = np.array([sim.model.jnt_qposadr[j] for j in joints], dtype=np.intp)
            self._object_index_of, self._object_index_ids = sim, (bodies, qpos_adr)
        return self._object_index_ids

    def object_state(self) -> np.ndarray:
        """Object poses (pos, quat wxyz) in scene order, then articulated joint positions."""
        bodies, qpos_adr = self._object_index()
        data = self.sim.data
        poses = np.concatenate([data.body_xpos[bodies], data.body_xquat[bodies]], axis=1)
        n_values = poses.size + qpos_adr.size
        dim = self.config.env_state_dim
        if n_values > dim:
            raise ValueError(
                f"{self.task.key} has {n_values} object-state values, more than env_state_dim={dim}"
            )
        out = np.zeros(dim, dtype=np.float32)
        out[: poses.size] = poses.ravel()
        out[poses.size : n_values] = data.qpos[qpos_adr]
        return out

    def _obs(self, raw_obs: dict) -> dict:
        obs = {"state": self.proprio(raw_obs), "env_state": self.object_state()}
        for cam in self.config.cameras:
            # LIBERO renders upside down; rotate 180 degrees as lerobot's LIBERO datasets do.
            obs[CAMERAS[cam]] = np.ascontiguousarray(raw_obs[f"{cam}_image"][::-1, ::-1])
        return obs

    def render_images(self) -> dict:
        """Images of the current sim state (for replay rendering)."""
        self._own_gl_context()
        raw_obs = self.raw.env._get_observations(force_update=True)
        return {
            CAMERAS[c]: np.ascontiguousarray(raw_obs[f"{c}_image"][::-1, ::-1])
            for c in self.config.cameras
        }
