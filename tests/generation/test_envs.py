import numpy as np
import pytest

from generation.envs.libero_env import EnvConfig, LiberoEnv, quat_to_axis_angle
from generation.envs.suites import (
    DEFAULT_HORIZON,
    SUITES,
    base_suite,
    get_task,
    init_states,
    list_tasks,
    parse_tasks,
)


def test_suites_have_their_tasks():
    sizes = {s: len(list_tasks(s)) for s in SUITES}
    assert sizes == {
        "libero_spatial": 10,
        "libero_object": 10,
        "libero_goal": 10,
        "libero_10": 10,
        "libero_90": 90,
    }
    assert init_states("libero_object", 0).shape[0] == 50


def test_task_lookup_by_index_name_and_substring():
    t = get_task("libero_object", 0)
    assert get_task("libero_object", t.name) == t
    assert get_task("libero_object", "0") == t
    assert get_task("libero_object", "alphabet_soup") == t
    assert [x.index for x in parse_tasks("libero_object", "0-2,5")] == [0, 1, 2, 5]


@pytest.mark.parametrize(
    "suite, task, expected",
    [
        ("libero_nope", 0, "valid suites: libero_spatial"),
        ("libero_object", 10, "valid indices are 0..9"),
        ("libero_object", "make_coffee", "valid tasks:"),
        ("libero_object", "pick_up", "matches several tasks"),
    ],
)
def test_lookup_errors_name_valid_choices(suite, task, expected):
    with pytest.raises(ValueError, match=expected):
        get_task(suite, task)


def test_perturbed_suites_resolve_like_nominal_ones():
    """LIBERO-PRO's copies keep the instruction a policy learned unless they reword it."""
    nominal = list_tasks("libero_spatial")
    swap = list_tasks("libero_spatial_swap")
    assert [t.language for t in swap] == [t.language for t in nominal]
    assert [t.name for t in swap] == [t.name for t in nominal]
    lan = list_tasks("libero_spatial_lan")
    assert all(a.language != b.language for a, b in zip(lan, nominal, strict=True))
    assert lan[1].language == "take black bowl next to ramekin and place on plate"  # its BDDL's
    milk = list_tasks("libero_spatial_with_milk")  # files renamed after the scene, 10 inits
    assert milk[1].language == nominal[2].language and milk[1].n_init_states == 10
    assert init_states("libero_spatial_with_milk", 1).shape[0] == 10
    assert DEFAULT_HORIZON["libero_spatial_swap"] == DEFAULT_HORIZON["libero_spatial"]
    assert base_suite("libero_10_with_mug") == "libero_10"
    with pytest.raises(ValueError, match="perturbed variants"):
        list_tasks("libero_spatial_nope")


def test_bad_env_config_is_a_clear_error():
    with pytest.raises(ValueError, match="valid: \\['agentview'"):
        EnvConfig(cameras=("frontview",))
    with pytest.raises(ValueError, match="render_mode"):
        EnvConfig(render_mode="pretty")


def test_quat_to_axis_angle():
    half = np.sqrt(0.5)
    np.testing.assert_allclose(quat_to_axis_angle([0, 0, half, half]), [0, 0, np.pi / 2], atol=1e-6)
    np.testing.assert_allclose(quat_to_axis_angle([0, 0, 0, 1]), [0, 0, 0])


def test_reset_step_and_truncation(object_env):
    env = object_env
    obs, info = env.reset(init_state_index=3)
    assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    assert obs["env_state"].shape == (84,) and np.abs(obs["env_state"]).sum() > 0
    assert info["init_state_index"] == 3 and info["init_state"].ndim == 1
    env.horizon = 5
    try:
        for _ in range(5):
            obs, reward, terminated, truncated, step_info = env.step(np.zeros(7))
        assert truncated and not terminated and reward == 0.0 and step_info["success"] is False
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(np.zeros(7))
    finally:
        env.horizon = 280
    with pytest.raises(ValueError, match="shape"):
        env.reset(init_state_index=0)
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="out of range"):
        env.reset(init_state_index=50)


def _rollout(env, actions, **reset_kwargs):
    obs, info = env.reset(**reset_kwargs)
    states = [obs["state"]]
    for a in actions:
        obs, *_ = env.step(a)
        states.append(obs["state"])
    return np.array(states), info


def test_replay_is_exact_across_resets_and_render_modes(object_env):
    actions = np.random.default_rng(0).uniform(-1, 1, (40, 7))
    first, info = _rollout(object_env, actions, init_state_index=1)
    again, _ = _rollout(object_env, actions, init_state=info["init_state"])
    np.testing.assert_array_equal(first, again)
    faithful = LiberoEnv(
        ("libero_object", 0),
        EnvConfig(render_mode="faithful", cameras=("agentview",), image_size=32),
    )
    try:
        rendered, _ = _rollout(faithful, actions, init_state=info["init_state"])
    finally:
        faithful.close()
    np.testing.assert_array_equal(first, rendered)


def test_seeded_reset_gives_new_layouts_reproducibly(object_env):
    a = object_env.reset(seed=11)[1]["init_state"]
    b = object_env.reset(seed=11)[1]["init_state"]
    c = object_env.reset(seed=12)[1]["init_state"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_images_are_upright_and_sized():
    env = LiberoEnv(
        ("libero_object", 0), EnvConfig(cameras=("agentview", "robot0_eye_in_hand"), image_size=48)
    )
    try:
        assert not env.lean  # rendering envs step through LIBERO's env.step
        obs, _ = env.reset(init_state_index=0)
        raw = env.raw.env._get_observations(force_update=True)
        assert obs["image"].shape == (48, 48, 3) and obs["image"].dtype == np.uint8
        assert obs["wrist_image"].shape == (48, 48, 3)
        np.testing.assert_array_equal(obs["image"], raw["agentview_image"][::-1, ::-1])
        # upright: the floor/table (bright, lower half) is below the wall/background
        assert obs["image"].std() > 5
        # fast mode skips the renders of reset and settling, never those of observations
        # (a step renders with kinematics one physics substep old: a few pixels differ by <= 2)
        stepped, *_ = env.step(np.zeros(7))
        diff = np.abs(stepped["image"].astype(int) - env.render_images()["image"].astype(int))
        assert diff.max() <= 3 and (diff > 0).mean() < 0.01
        again, _ = env.reset(init_state_index=1)
        np.testing.assert_array_equal(again["image"], env.render_images()["image"])
        assert not np.array_equal(again["image"], obs["image"])
    finally:
        env.close()


def test_vector_env_autoresets_through_schedule():
    from generation.envs.vector import SubprocVectorEnv

    task = get_task("libero_object", 0)
    with SubprocVectorEnv(
        task, EnvConfig(horizon=4), num_envs=2, init_state_indices=[0, 1, 2, 3]
    ) as venv:
        obs, infos = venv.reset()
        assert obs["state"].shape == (2, 8)
        assert [i["init_state_index"] for i in infos] == [0, 1]
        ends = []
        for _ in range(4):
            obs, rew, term, trunc, infos = venv.step(np.zeros((2, 7)))
        assert trunc.all()
        ends = [i["reset_info"]["init_state_index"] for i in infos]
        assert ends == [2, 3]
        assert all(i["episode"]["length"] == 4 for i in infos)


def test_vector_env_state_carries_over_to_new_workers_bit_for_bit():
    """A checkpointed vector env (mid-episode, its schedule half used, its seeded layouts'
    RNG moved on) continues in fresh worker processes exactly as the original does."""
    from generation.envs.vector import SubprocVectorEnv

    task = get_task("libero_object", 0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(16, 2, 7))
    cfg = EnvConfig(horizon=5)
    made = dict(num_envs=2, init_state_indices=[3, 1, 4], seed=5)
    with SubprocVectorEnv(task, cfg, **made) as venv:
        venv.reset()
        for a in actions[:8]:  # one episode ended and a second is 3 steps in
            venv.step(a)
        state = venv.get_state()
        assert [len(s["actions"]) for s in state] == [3, 3]
        original = [venv.step(a) for a in actions[8:]]
    with SubprocVectorEnv(task, cfg, **made) as fresh:
        fresh.set_state(state)
        continued = [fresh.step(a) for a in actions[8:]]
    for (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) in zip(original, continued, strict=True):
        for key in o1:
            assert np.array_equal(o1[key], o2[key]), key
        assert np.array_equal(r1, r2) and np.array_equal(te1 | tr1, te2 | tr2)
        assert [i.get("reset_info", {}).get("init_state_index") for i in i1] == [
            i.get("reset_info", {}).get("init_state_index") for i in i2
        ]


def test_fixtures_keep_one_pose_so_an_init_state_renders_the_same():
    """LIBERO re-places fixtures (here LIBERO-Spatial's cabinet and stove) at random on every
    reset; the wrapper pins them, so resets and fresh envs give the same first image."""
    cfg = EnvConfig(cameras=("agentview",), image_size=32)
    first = LiberoEnv(("libero_spatial", 0), cfg)
    try:
        images, poses = [], []
        for seed in (None, 7, None):  # a seeded reset between must not move them either
            obs, _ = first.reset(init_state_index=0, seed=seed)
            images.append(obs["image"])
            poses.append(first.sim.model.body_pos.copy())
    finally:
        first.close()
    second = LiberoEnv(("libero_spatial", 0), cfg)
    try:
        obs, _ = second.reset(init_state_index=0)
        images.append(obs["image"])
        poses.append(second.sim.model.body_pos.copy())
    finally:
        second.close()
    for image, pose in zip(images[1:], poses[1:], strict=True):
        np.testing.assert_array_equal(pose, poses[0])
        np.testing.assert_array_equal(image, images[0])


def test_two_rendering_envs_in_one_process_each_render_their_own_scene():
    """robosuite renders into whichever GL context is current and makes its own current only
    when creating it: the older of two envs drew the newer one's meshes (evaluation workers and
    the dataset writer keep several envs per process). Closing one must not break the other."""
    cfg = EnvConfig(cameras=("agentview",), image_size=32)
    first = LiberoEnv(("libero_object", 0), cfg)
    second = None
    try:
        alone = first.reset(init_state_index=0)[0]["image"]
        second = LiberoEnv(("libero_spatial", 0), cfg)
        other = second.reset(init_state_index=0)[0]["image"]
        np.testing.assert_array_equal(first.reset(init_state_index=0)[0]["image"], alone)
        np.testing.assert_array_equal(second.reset(init_state_index=0)[0]["image"], other)
        second.close()
        second = None
        np.testing.assert_array_equal(first.reset(init_state_index=0)[0]["image"], alone)
    finally:
        first.close()
        if second is not None:
            second.close()


def _sphere_xml(n: int = 40) -> str:
    theta, phi = np.meshgrid(np.linspace(0.1, np.pi - 0.1, n), np.linspace(0, 2 * np.pi, n))
    verts = 0.05 * np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1
    )
    idx = np.arange(n * n).reshape(n, n)
    faces = [
        (idx[i, j], idx[i + 1, j], idx[i + 1, j + 1]) for i in range(n - 1) for j in range(n - 1)
    ]
    faces += [
        (idx[i, j], idx[i + 1, j + 1], idx[i, j + 1]) for i in range(n - 1) for j in range(n - 1)
    ]
    vert = " ".join(f"{v:.6f}" for v in verts.reshape(-1))
    face = " ".join(str(int(f)) for f in np.array(faces).reshape(-1))
    return f"""<mujoco><asset><mesh name="ball" vertex="{vert}" face="{face}"/></asset>
    <worldbody><geom type="mesh" mesh="ball" contype="0" conaffinity="0"/></worldbody></mujoco>"""


def test_simplify_mesh_merges_vertices_within_a_cell_and_keeps_their_positions():
    import mujoco

    from generation.envs.libero_env import simplify_mesh

    model = mujoco.MjModel.from_xml_string(_sphere_xml())
    verts = model.mesh_vert.copy()
    before = int(model.mesh_facenum[0])
    assert simplify_mesh(model, 0, 0.0) == (before, before)  # 0: left whole
    n0, n1 = simplify_mesh(model, 0, 0.01)
    assert n0 == before and 0 < n1 < before / 3 and model.mesh_facenum[0] == n1
    np.testing.assert_array_equal(model.mesh_vert, verts)  # only the face list changed
    faces = model.mesh_face[:n1]
    assert faces.max() < model.mesh_vertnum[0]
    assert (
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    ).all()
    assert len(np.unique(np.sort(faces, axis=1), axis=0)) == n1  # no duplicates


def test_fast_mode_simplifies_visual_meshes_and_leaves_physics_alone():
    """Fast mode clusters visual-mesh vertices below half a pixel (rendering here is
    vertex-bound); collision meshes, physics and the picture stay (mean error < 3 levels)."""
    actions = np.random.default_rng(0).uniform(-0.5, 0.5, (15, 7))
    runs = {}
    for cell in (0.0, None):
        env = LiberoEnv(
            ("libero_object", 0), EnvConfig(cameras=("agentview",), image_size=64, mesh_cell=cell)
        )
        try:
            states, _ = _rollout(env, actions, init_state_index=2)
            runs[cell] = (states, env.render_images()["image"], env.sim.model.mesh_facenum.copy())
        finally:
            env.close()
    (states_whole, image_whole, faces_whole), (states, image, faces) = runs[0.0], runs[None]
    np.testing.assert_array_equal(states, states_whole)
    assert faces.sum() < 0.6 * faces_whole.sum()
    assert np.abs(image.astype(int) - image_whole.astype(int)).mean() < 3


def test_env_cache_keeps_the_most_recent_envs_and_closes_the_rest():
    from generation.envs.cache import EnvCache

    closed = []

    class Fake:
        def __init__(self, key):
            self.key = key

        def close(self):
            closed.append(self.key)

    cache = EnvCache(2)
    first = cache.get("a", lambda: Fake("a"))
    cache.get("b", lambda: Fake("b"))
    assert cache.get("a", lambda: Fake("new")) is first  # reused, now the most recent
    cache.get("c", lambda: Fake("c"))  # closes "b", the least recently used
    assert closed == ["b"] and "a" in cache and "c" in cache and len(cache) == 2
    cache.close()
    assert sorted(closed) == ["a", "b", "c"] and len(cache) == 0
    with pytest.raises(ValueError, match="at least 1"):
        EnvCache(0)
