"""lazyapply's benchmark suite: ``python -m benchmarks --help``.

Every comparison runs side by side in one process (the hand-written native call, the
reference ``array_api_extra.lazy_apply``, ``lazyapply.lazy_apply`` and a
``@lazyapply.lazy`` kernel), interleaved round by round so that a noisy neighbour
slows all of them alike, and reports medians and ratios.
"""
