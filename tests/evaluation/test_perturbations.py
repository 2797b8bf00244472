"""LIBERO-PRO perturbation families: the catalogue read from the package, and its summaries."""

from __future__ import annotations

import pytest

from evaluation.perturbations import perturbation, perturbations, resolve, summarize


def test_summaries_say_what_changes_and_what_does_not() -> None:
    swap = {"moved": [("plate_1", "r_plate", "r_box"), ("cookies_1", "r_box", "r_plate")]}
    assert summarize([swap, swap]) == (
        "swaps the start regions of objects (e.g. plate_1 <-> cookies_1); same instruction and goal"
    )
    moved = {"moved": [("bowl_1", "r_a", "r_b")]}
    assert summarize([moved, {}]).startswith("moves objects to other start regions in 1/2 tasks")
    added = {"added": ["libero_mug_yellow"]}
    assert summarize([added], (10,)) == (
        "adds libero_mug_yellow to the scene; same instruction and goal; "
        "10 init states per task (nominal: 50)"
    )
    new_task = {"instruction": ["pick the other bowl"], "goal": ["(on bowl_2 plate_1)"]}
    assert summarize([new_task]) == (
        "a new goal and instruction (e.g. 'pick the other bowl': (on bowl_2 plate_1))"
    )
    assert summarize([{"instruction": ["grab it"]}]) == (
        "rewords the instruction (e.g. 'grab it'); same goal"
    )
    assert summarize([{}]) == "the same BDDL as the nominal tasks"


def test_spatial_families_are_read_off_their_bddl_files() -> None:
    swap = perturbation("libero_spatial", "swap")
    assert swap.key == "libero_spatial_swap" and swap.usable and all(swap.ready)
    assert swap.twins == tuple(range(10))  # the same file names as the nominal tasks
    assert swap.description.startswith("swaps the start regions of objects")
    assert swap.description.endswith("same instruction and goal")
    assert "adds libero_mug_yellow" in perturbation("libero_spatial", "with_mug").description
    assert perturbation("libero_spatial", "object").description.startswith("replaces objects")
    assert perturbation("libero_spatial", "lan").description.startswith("rewords the instruction")
    assert perturbation("libero_spatial", "task").description.startswith("a new goal")
    milk = perturbation("libero_spatial", "with_milk")  # renamed files, another task order
    assert milk.twins == (0, 2, 4, 6, 8, 1, 3, 5, 7, 9) and set(milk.n_init_states) == {10}
    assert milk.perturbed_indices([1, 2]) == [5, 1]


def test_families_the_package_does_not_ship_are_listed_but_refused() -> None:
    found = {p.name: p for p in perturbations("libero_spatial")}
    usable = {name for name, p in found.items() if p.usable}
    assert {"swap", "object", "lan", "task", "with_mug", "with_milk"} <= usable
    assert "BDDL files" in found["object_ood"].problem
    assert "object assets" in found["with_red_stick"].problem
    with pytest.raises(ValueError) as err:
        resolve("libero_spatial", ["swap", "object_ood", "nope"])
    text = str(err.value)
    assert "'object_ood' cannot run here: the package does not ship its BDDL files" in text
    assert "'nope' is not a perturbation of libero_spatial" in text
    assert "Usable perturbations of libero_spatial: lan, object, swap, task" in text


def test_a_family_missing_some_tasks_refuses_only_those() -> None:
    milk = perturbation("libero_10", "with_milk")  # no init states for two of its tasks
    assert milk.usable and sum(milk.ready) == 8
    with pytest.raises(ValueError, match=r"task\(s\) \[0\]: the package does not ship"):
        milk.perturbed_indices([0, 2])
