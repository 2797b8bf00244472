import numpy as np
import pytest
import torch
from test_dlr_synthetic import synthetic_demos

from generation.dlr.discover import Discovery, VAEConfig, discover, label_report
from generation.dlr.learn import BCConfig, behaviour_clone, pattern_separation

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_VAE = VAEConfig(num_patterns=3, epochs=15, restarts=1, window=10)


def test_vae_recovers_synthetic_strategies(tmp_path):
    demos = synthetic_demos(per_strategy=10)
    # the goal sits at env_state[0:3], offset 8 of the flat state: paths in its frame too
    disc = discover(demos, FAST_VAE, horizon=60, relative=[8])
    x, _ = disc.features(demos[0].states, demos[0].env_states)
    # eef pos, goal - eef and their 10-step changes (the constant gripper columns are dropped)
    assert x.shape[1] == 2 * (3 + 3)
    report = label_report(disc, demos)
    assert report["episode_nmi"] > 0.9, report
    assert sum(report["pattern_sizes"]) == len(demos)
    # q(z|s) is a distribution over the K patterns
    q = disc.q(demos[0].states, demos[0].env_states)
    assert q.shape == (len(demos[0]), 3) and np.allclose(q.sum(1), 1.0, atol=1e-5)
    # save / load round trip keeps the labelling function
    disc.save(tmp_path / "vae.pt")
    again = Discovery.load(tmp_path / "vae.pt")
    assert again.features.relative == [8]
    assert [again.label_episode(e) for e in demos] == report["episode_labels"]


def test_labels_are_a_function_of_states():
    demos = synthetic_demos(per_strategy=5)
    disc = discover(demos, VAEConfig(epochs=5, restarts=1), horizon=60)
    e = demos[0]
    first = disc.label_states(e.states, e.env_states)
    # same states (a copy, in another episode object) -> same labels
    assert np.array_equal(first, disc.label_states(e.states.copy(), e.env_states.copy()))
    # labels do not depend on other states in the batch or on the episode's metadata
    e.strategy_id, e.source = 99, "other"
    assert np.array_equal(first, disc.label_states(e.states, e.env_states))


def test_bc_conditioned_policy_follows_its_pattern():
    demos = synthetic_demos(per_strategy=6)
    patterns = [e.strategy_id for e in demos]
    cfg = BCConfig(epochs=100, hidden=64, batch_size=128, lr=3e-3)
    policy, losses = behaviour_clone(demos, patterns, num_patterns=3, cfg=cfg)
    assert losses[-1] < losses[0]
    # from the same start state, z changes the action: toward the pattern's via point
    obs = torch.as_tensor(np.concatenate([demos[0].states[:1], demos[0].env_states[:1]], 1))
    means = torch.stack([policy.dist(obs, z).mean[0, :3] for z in range(3)]).detach().numpy()
    assert means[0, 1] > 0.05 and means[1, 1] < -0.05  # left vs right via point (y)
    assert means[2, 2] > means[0, 2] + 0.05  # above (z)
    # the unconditioned policy is the same network without the z input
    plain, _ = behaviour_clone(demos, None, num_patterns=0, cfg=BCConfig(epochs=5, hidden=64))
    assert plain.num_patterns == 0 and plain.net[0].in_features == policy.net[0].in_features - 3


def test_pattern_separation_metric():
    demos = synthetic_demos(per_strategy=4)
    paths = {k: [e.eef_path for e in demos if e.strategy_id == k] for k in range(3)}
    sep = pattern_separation(paths)
    assert sep["separation_ratio"] > 5
