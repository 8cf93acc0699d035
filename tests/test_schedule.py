"""The interval schedule (pure): every mode's plan, exhaustion, cycling, epochs vs max_steps, phase-2 sizing."""

from __future__ import annotations

from collections import Counter
from itertools import groupby

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinythinker_ray.core.modes import MODES
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.train.schedule import one_epoch, pair_plan, schedule, stage_plan, steps_per_epoch


@pytest.mark.parametrize("mode, plan", [
    ("summarize", [("summarize", 3)]),
    ("recall_summarize", [("recall", 3), ("summarize", 3)]),
    ("analyze_summarize", [("analyze", 15), ("summarize", 3)]),
    ("recall_analyze_summarize", [("recall", 3), ("analyze", 15), ("summarize", 3)]),
])
def test_stage_plan_per_mode(mode, plan):
    assert stage_plan(MODES[mode], 3, 5) == plan


def test_stage_plan_rejects_bad_sizes():
    with pytest.raises(ConfigError):
        stage_plan(MODES["summarize"], 0, 5)


def test_blocks_cycle_and_an_exhausted_stage_is_skipped():
    plan = stage_plan(MODES["recall_analyze_summarize"], 2, 2)  # recall 2, analyze 4, summarize 2
    epoch = one_epoch({"recall": 3, "analyze": 7, "summarize": 1}, plan)
    # r r | a a a a | s (runs out after 1) | r (runs out) | a a a | (recall, summarize exhausted)
    assert epoch == ["recall"] * 2 + ["analyze"] * 4 + ["summarize"] + ["recall"] + ["analyze"] * 3
    assert Counter(epoch) == {"recall": 3, "analyze": 7, "summarize": 1}


def test_epochs_repeat_from_the_first_stage_and_max_steps_wins():
    plan = stage_plan(MODES["recall_summarize"], 1, 5)
    sizes = {"recall": 2, "summarize": 3}
    epoch = ["recall", "summarize", "recall", "summarize", "summarize"]
    assert schedule(sizes, plan) == epoch
    assert schedule(sizes, plan, epochs=2) == epoch * 2
    assert schedule(sizes, plan, epochs=1.5) == (epoch * 2)[:8]  # ceil(1.5 x 5)
    assert schedule(sizes, plan, epochs=1, max_steps=12) == (epoch * 3)[:12]
    assert steps_per_epoch(sizes, plan) == 5


def test_stages_outside_the_mode_are_ignored_and_empty_data_is_an_error():
    plan = stage_plan(MODES["summarize"], 4, 5)
    assert schedule({"recall": 9, "analyze": 9, "summarize": 6}, plan) == ["summarize"] * 6
    with pytest.raises(ConfigError, match="no training batches"):
        schedule({"recall": 5, "summarize": 0}, plan)


@given(sizes=st.lists(st.integers(0, 40), min_size=3, max_size=3), interval=st.integers(1, 6),
       options=st.integers(1, 5), mode=st.sampled_from(["summarize", "recall_summarize", "analyze_summarize",
                                                         "recall_analyze_summarize"]))
def test_an_epoch_takes_every_batch_once_in_blocks_no_longer_than_the_plan(sizes, interval, options, mode):
    plan = stage_plan(MODES[mode], interval, options)
    stage_sizes = dict(zip(("recall", "analyze", "summarize"), sizes, strict=True))
    epoch = one_epoch(stage_sizes, plan)
    assert Counter(epoch) == {s: stage_sizes[s] for s, _ in plan if stage_sizes[s]}
    block, left = dict(plan), {s: stage_sizes[s] for s, _ in plan}
    for stage, run in groupby(epoch):
        n = len(list(run))
        if len(plan) > 1 and all(left.values()):  # while no stage has run out, blocks alternate
            assert n <= block[stage]
        left[stage] -= n
    assert epoch == one_epoch(stage_sizes, plan)  # deterministic: every worker computes the same list


def test_pair_plan_sizes_blocks_from_pair_counts_like_the_reference():
    plan, total = pair_plan({"recall": 100, "analyze": 480}, batch_size=8, world_size=2, cycles=10)
    assert plan == [("recall", 7), ("analyze", 35)]  # 100 // 16 + 1; (480 // 100 + 1) x 7
    assert total == 420
    plan, total = pair_plan({"recall": 0, "analyze": 30}, batch_size=8, world_size=1, cycles=2)
    assert plan == [("analyze", 4)] and total == 8
    with pytest.raises(ConfigError):
        pair_plan({}, batch_size=8, world_size=1, cycles=1)


def test_pair_plan_sizes_the_summarize_block_from_its_own_pairs():
    """Our addition (the reference pairs no summaries): a block like the recall block, after the analyze one."""
    plan, total = pair_plan({"recall": 100, "analyze": 480, "summarize": 40}, batch_size=8, world_size=2, cycles=2)
    assert plan == [("recall", 7), ("analyze", 35), ("summarize", 3)] and total == 90  # 40 // 16 + 1
    assert pair_plan({"summarize": 5}, batch_size=8, world_size=1, cycles=3) == ([("summarize", 1)], 3)
