"""Backdoor triggers and data-poisoning attacks on image data sets.

Images are arrays of shape ``(n_samples, height, width, channels)``, or
``(n_samples, height, width)`` for grey-scale images (results keep the
layout given), indexed in (row, column) order, either ``uint8`` (0-255) or
floating point. Flat features ``(n_samples, n_features)`` have no pixels to
carry a trigger and are refused. Labels are
integer arrays of shape ``(n_samples,)``. Trigger colours are given in the
image's own units (255 for ``uint8``, 1.0 for floats in [0, 1], 16 for the
scikit-learn digits, ...).

Nothing in this package modifies its inputs: every trigger and attack returns
new arrays. An attack that could change no label (fewer than two classes,
a source equal to the target, a fraction that selects no sample) raises a
``ValueError`` naming the parameter rather than report poison that is not
there.

Every public name is importable from here; the modules hold one idea each:

- :mod:`~sklearn_backdoor.poisoning.triggers`: the :class:`Trigger` interface,
  :class:`PatchTrigger`, :class:`BlendTrigger`, :class:`CompositeTrigger`;
- :mod:`~sklearn_backdoor.poisoning.patches`: the pixel, X and L shapes and
  the checkerboard;
- :mod:`~sklearn_backdoor.poisoning.blends`: the noise blend and the
  WATERMARK pictures;
- :mod:`~sklearn_backdoor.poisoning.dirty_label`: the dirty-label attacks and
  the systematic label flip;
- :mod:`~sklearn_backdoor.poisoning.reference`: the reference CIFAR-10
  scenarios;
- :mod:`~sklearn_backdoor.poisoning.dataset`: :class:`PoisonedDataset`, what
  every attack returns;
- :mod:`~sklearn_backdoor.poisoning.checks` and
  :mod:`~sklearn_backdoor.poisoning.sampling`: argument checks and sample
  selection shared by the attacks (also those of
  :mod:`sklearn_backdoor.clean_label` and :mod:`sklearn_backdoor.adaptive`).
"""

from sklearn_backdoor.poisoning.blends import WATERMARK_NAMES as WATERMARK_NAMES
from sklearn_backdoor.poisoning.blends import noise_blend_trigger, watermark_trigger
from sklearn_backdoor.poisoning.dataset import PoisonedDataset
from sklearn_backdoor.poisoning.dirty_label import ATTACK_MODES as ATTACK_MODES
from sklearn_backdoor.poisoning.dirty_label import (
    dirty_label_backdoor,
    label_flip_backdoor,
    systematic_label_flip,
)
from sklearn_backdoor.poisoning.patches import TRIGGER_METHODS as TRIGGER_METHODS
from sklearn_backdoor.poisoning.patches import (
    checkerboard_trigger,
    ell_trigger,
    make_trigger,
    pattern_trigger,
    pixel_trigger,
)
from sklearn_backdoor.poisoning.reference import (
    REFERENCE_FRACTIONS as REFERENCE_FRACTIONS,
)
from sklearn_backdoor.poisoning.reference import REFERENCE_PAIRS as REFERENCE_PAIRS
from sklearn_backdoor.poisoning.reference import (
    BackdoorScenario,
    reference_scenarios,
)
from sklearn_backdoor.poisoning.triggers import (
    BlendTrigger,
    CompositeTrigger,
    PatchTrigger,
    Trigger,
    apply_trigger,
)

__all__ = [
    "BackdoorScenario",
    "BlendTrigger",
    "CompositeTrigger",
    "PatchTrigger",
    "PoisonedDataset",
    "Trigger",
    "apply_trigger",
    "checkerboard_trigger",
    "dirty_label_backdoor",
    "ell_trigger",
    "label_flip_backdoor",
    "make_trigger",
    "noise_blend_trigger",
    "pattern_trigger",
    "pixel_trigger",
    "reference_scenarios",
    "systematic_label_flip",
    "watermark_trigger",
]
