"""Find and remove backdoor-poisoned samples from training data.

Sanitizers are scikit-learn estimators whose ``fit(X, y)`` decides which
training samples to keep (``mask_``); :class:`Pipeline` applies them while
fitting only.
"""

from sklearn_backdoor.activation_clustering import ActivationClusteringFilter
from sklearn_backdoor.adaptive import adaptive_backdoor
from sklearn_backdoor.augmentation import RandomCropFlip
from sklearn_backdoor.base import BaseSanitizer
from sklearn_backdoor.chain import SanitizerChain
from sklearn_backdoor.classifier import NetworkClassifier
from sklearn_backdoor.clean_label import clean_label_backdoor
from sklearn_backdoor.compatibility import compatibility_gap, self_expansion_error
from sklearn_backdoor.contract import BackdoorWarning, SanitizerMixin
from sklearn_backdoor.incompatibility import IncompatibilityClustering
from sklearn_backdoor.itlm import ITLMFilter
from sklearn_backdoor.minimax import NoisyLabelMinimaxTrainer
from sklearn_backdoor.pipeline import Pipeline, SanitizerSampler, make_pipeline
from sklearn_backdoor.spectral_signatures import SpectralSignatureFilter
from sklearn_backdoor.training import FastNeuralNetClassifier

__version__ = "0.1.0.dev0"

__all__ = [
    "ActivationClusteringFilter",
    "BackdoorWarning",
    "BaseSanitizer",
    "FastNeuralNetClassifier",
    "ITLMFilter",
    "IncompatibilityClustering",
    "NetworkClassifier",
    "NoisyLabelMinimaxTrainer",
    "Pipeline",
    "RandomCropFlip",
    "SanitizerChain",
    "SanitizerMixin",
    "SanitizerSampler",
    "SpectralSignatureFilter",
    "adaptive_backdoor",
    "clean_label_backdoor",
    "compatibility_gap",
    "make_pipeline",
    "self_expansion_error",
]
