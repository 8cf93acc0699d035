"""Which stage's batch every training step takes: the TinyThinker interval schedule, as pure functions.

Phase 1 interleaves the stage datasets in blocks: `interval` recall batches, `interval x options` analyze
batches, `interval` summarize batches, then around again. A stage that runs out is skipped; the epoch ends
when every stage has run out, and the next epoch starts again at the first stage. The whole run is one list
of stage names computed before training, so every worker (and a resumed run) takes exactly the same steps.

Phase 2 (RPO) sizes its blocks from pair counts instead (`pair_plan`), as the authors' DPO trainer does.
"""

from __future__ import annotations

import math

from ..core.modes import Mode
from ..errors import ConfigError

Plan = list[tuple[str, int]]  # [(stage, batches per block)] in cycle order


def stage_plan(mode: Mode, interval: int, num_options: int) -> Plan:
    """The reference's intervals: recall = i, analyze = i x options, summarize = i; stages off in `mode` drop out."""
    if interval < 1 or num_options < 1:
        raise ConfigError(f"interval and num_options must be >= 1 (got {interval}, {num_options})")
    block = {"recall": interval, "analyze": interval * num_options, "summarize": interval}
    return [(s, block[s]) for s in mode.stages]


def one_epoch(stage_sizes: dict[str, int], plan: Plan) -> list[str]:
    """One pass over every stage: blocks in plan order; a stage that runs out mid-block ends its block early."""
    left = {s: stage_sizes.get(s, 0) for s, _ in plan}
    steps: list[str] = []
    i = 0
    while any(left.values()):
        stage, block = plan[i % len(plan)]
        take = min(block, left[stage])  # 0 for an exhausted stage: skipped
        steps += [stage] * take
        left[stage] -= take
        i += 1
    return steps


def schedule(stage_sizes: dict[str, int], plan: Plan, *, epochs: float = 1.0,
             max_steps: int | None = None) -> list[str]:
    """The stage of every global step. `max_steps` (if set) wins over `epochs`; epochs may be fractional.

    `stage_sizes` are batches per worker per epoch (every worker sees the same count: Ray splits equally).
    """
    epoch = one_epoch(stage_sizes, plan)
    if not epoch:
        raise ConfigError("no training batches: every stage in the plan is empty (too few rows for "
                          "sft.batch_size x train.num_workers?)")
    total = max_steps if max_steps is not None else math.ceil(epochs * len(epoch))
    return (epoch * math.ceil(total / len(epoch)))[:total]


def steps_per_epoch(stage_sizes: dict[str, int], plan: Plan) -> int:
    return len(one_epoch(stage_sizes, plan))


def pair_plan(pair_counts: dict[str, int], batch_size: int, world_size: int, cycles: int) -> tuple[Plan, int]:
    """Phase 2: (plan, total steps) from the preference-pair counts of each stage, as the reference sizes DPO.

    recall block = recall_pairs // (batch x world) + 1; analyze block = (analyze_pairs // recall_pairs + 1) x
    recall block (there are ~one analyze pair per option per recall pair); total = blocks x cycles. A stage
    without pairs drops out (its block alone is then sized like the recall block). The summarize block (our
    addition, the reference has no summary pairs) is sized like the recall block, from its own pairs.
    """
    recall, analyze = pair_counts.get("recall", 0), pair_counts.get("analyze", 0)
    summarize = pair_counts.get("summarize", 0)
    per_step = batch_size * world_size
    if recall:
        recall_block = recall // per_step + 1
        analyze_block = (analyze // recall + 1) * recall_block if analyze else 0
    else:
        recall_block, analyze_block = 0, (analyze // per_step + 1 if analyze else 0)
    summarize_block = summarize // per_step + 1 if summarize else 0
    plan = [(s, n) for s, n in (("recall", recall_block), ("analyze", analyze_block), ("summarize", summarize_block))
            if n]
    if not plan:
        raise ConfigError("no preference pairs: nothing to train in phase 2")
    return plan, sum(n for _, n in plan) * cycles
