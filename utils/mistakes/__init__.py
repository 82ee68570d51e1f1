"""Known-wrong normalizers, in numpy, for diagnosis: the one catalogue of classic mistakes.

``descriptions``: the one table of what a mistake is called (``DESCRIPTIONS``) and
``describe``, which fills an entry with a lesson's words. ``catalogue``: the one parameterized
wrong normalizer, forward and backward, over the sets of entries a normalization's statistics
run over (BatchNorm, spatial and synchronized BatchNorm, layer, instance, group and RMS norm).
``batchnorm``: lessons 02 and 03's picks (x (N, D)), exported here as well; the other lessons
pick theirs in their check modules (``utils.checks.*``).
"""

from utils.mistakes.batchnorm import (
    DX_MISTAKES,
    FORWARD_MISTAKES,
    backward_mistakes,
    forward_mistakes,
    statistics_mistakes,
)
from utils.mistakes.catalogue import standardize
from utils.mistakes.descriptions import BATCH, DESCRIPTIONS, describe

__all__ = [
    "BATCH",
    "DESCRIPTIONS",
    "DX_MISTAKES",
    "FORWARD_MISTAKES",
    "backward_mistakes",
    "describe",
    "forward_mistakes",
    "standardize",
    "statistics_mistakes",
]
