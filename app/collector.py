"""The garbage collector's policy of a long-running chiso process (a web worker, the exporter's).

A worker keeps large memos between requests (the shared answers' bodies, the per-unit figures of
aggregates.live_memo and tau_memo, the rankings' rows): some hundred thousand objects that live as
long as the process. CPython's defaults (a young collection every 700 allocations, a full one every
100 of those) walk them again and again: a refresher tick under a national feed
(`bench.refresher_ticks --touch 1400`) spent ~220 ms of its ~830 ms CPU in the collector, 24 full
collections in 16 ticks. Nothing in chiso relies on the collector to free memory promptly (no
finalizers, cycles are rare), so young collections run every 50,000 allocations and the older
generations seldom; what the process loaded at start is frozen out of every collection.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 20)
_frozen = False


def tune() -> None:
    """Set this process's collector policy: at the start of a web worker's lifespan and of the
    exporter's process, after the imports and before the memos grow. What is alive the first time
    (modules, settings) is frozen once; a process that starts apps again (the tests) freezes no more."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
    gc.set_threshold(*THRESHOLDS)
