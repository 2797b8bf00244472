import numpy as np
import pytest
import torch
from test_dlr_synthetic import synthetic_demos

from generation.dlr.features import feature_spec, goal_objects
from generation.dlr.learn import BCConfig, behaviour_clone
from generation.dlr.mi import MIBonus
from generation.dlr.policy import Critic, load_policy, save_policy
from generation.envs.suites import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_goal_objects_match_region_names():
    names = ["alphabet_soup_1", "basket_1", "milk_1", "akita_black_bowl_1", "akita_black_bowl_2"]
    goal = [["In", "alphabet_soup_1", "basket_1_contain_region"]]
    assert goal_objects(names, goal) == [0, 1]
    # bowl_1 does not match bowl_2's region, and bowl_1 is not a prefix of bowl_10
    assert goal_objects(names, [["On", "akita_black_bowl_2", "plate_1"]]) == [4]


def test_goal_spec_of_a_libero_task():
    # LIBERO-Object task 0: alphabet soup (slot 0) into the basket (slot 1), 7 objects
    spec = feature_spec(get_task("libero_object", 0), "goal")
    assert spec["relative"] == [8, 15]
    assert spec["index"][:22] == list(range(22))  # proprio + the two goal objects' poses
    assert spec["index"][22] == 8 + 7 * 7  # then the joints (none here) and padding
    assert feature_spec(get_task("libero_object", 0), "all") is None
    with pytest.raises(ValueError, match="valid: \\['all', 'goal'\\]"):
        feature_spec(get_task("libero_object", 0), "some")


def test_policy_reads_its_features_and_round_trips(tmp_path):
    demos = synthetic_demos(per_strategy=3)
    spec = {"index": list(range(8)) + [8, 9, 10], "relative": [8]}
    policy, _ = behaviour_clone(demos, None, 0, BCConfig(epochs=3, hidden=32), spec)
    assert policy.net[0].in_features == 11 + 3
    obs = torch.as_tensor(np.concatenate([demos[0].states, demos[0].env_states], 1))
    feats = policy.features(obs)
    # the goal position relative to the end effector
    assert torch.allclose(feats[:, 11:], obs[:, 8:11] - obs[:, :3])
    # changing a coordinate outside the features leaves the action unchanged
    moved = obs.clone()
    moved[:, 30] += 5.0
    assert torch.equal(policy.dist(obs).mean, policy.dist(moved).mean)
    save_policy(policy, tmp_path / "p.pt")
    again = load_policy(tmp_path / "p.pt")
    assert torch.equal(again.dist(obs).mean, policy.dist(obs).mean)
    # the critic and the MI discriminator read the same features
    assert Critic(policy, 16)(obs).shape == (len(obs),)
    conditioned, _ = behaviour_clone(demos, [0, 1, 2] * 3, 3, BCConfig(epochs=1, hidden=16), spec)
    assert MIBonus(conditioned).disc.log_q(obs).shape == (len(obs), 3)
