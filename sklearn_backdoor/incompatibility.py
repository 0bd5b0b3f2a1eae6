"""Incompatibility clustering: Inverse Self-Paced Learning plus boosting.

Jin, Sun & Rinard, *Incompatibility Clustering as a Defense Against Backdoor
Poisoning Attacks*, ICLR 2023 (paper 001 in ``docs/``). ISPL (Algorithm 1)
repeatedly grows a small "core" set that a network can learn from a random
fraction of itself; poisoned and clean samples are incompatible, so each core
set is (nearly) homogeneous. A network trained on each core set then votes
on every training sample (Algorithm 2); samples whose label agrees with the
modal vote are kept. An optional self-paced self-training pass recovers clean
samples the weak learners were too weak to vouch for.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from sklearn_backdoor.activation_clustering import NO_CLUSTER
from sklearn_backdoor.base import (
    BackdoorWarning,
    BaseSanitizer,
    NetworkEstimatorMixin,
    nonfinite_as_worst,
)
from sklearn_backdoor.cluster_vote import (
    candidate_members,
    confirm_candidates,
    flag_poison_clusters,
    flags_of,
    most_cohesive,
)
from sklearn_backdoor.device_clustering import clusters_on_device
from sklearn_backdoor.docstrings import fill_doc
from sklearn_backdoor.pasted_pixels import confirm_pasted
from sklearn_backdoor.patch_check import (
    class_medians,
    lowest_label_readings,
    patch_groups,
)
from sklearn_backdoor.pooling import block_mean, check_block_size
from sklearn_backdoor.representations import (
    extract_representations,
    logits_and_representations,
)
from sklearn_backdoor.saliency import input_saliency
from sklearn_backdoor.training import (
    Stopwatch,
    per_sample_loss,
    predict_logits,
    side_stream,
    train_augmentation,
    train_net,
)


@fill_doc
class IncompatibilityClustering(BaseSanitizer):
    """Remove backdoor poison by incompatibility clustering (ISPL + boosting).

    Runs Inverse Self-Paced Learning ``n_bags`` times; each run splits the
    data into ``n_components`` core sets of ``component_fraction`` of the
    samples each. A weak learner is trained on each core set, every weak
    learner predicts every training sample, and a sample is kept when the
    modal prediction equals its label with at least ``min_votes`` votes.
    Defaults follow paper 001 App. C and the authors' reference code.

    Parameters
    ----------
    {{net}}
    n_components : int, default=8
        Core sets per ISPL run (paper: 8 on CIFAR-10, 4 on GTSRB).
    component_fraction : float or None, default=None
        Size of each core set as a fraction of the whole data set. None means
        ``0.96 / n_components`` (the reference's 12% for 8 components). Within
        a run the target fraction of the *remaining* samples is
        ``p = min(1, component_fraction * n / n_remaining)``.
    n_bags : int, default=3
        Independent ISPL runs; ``n_bags * n_components`` weak learners vote.
    expansion : float, default=0.25
        Expansion factor alpha: after each trim the network continues training
        on a random ``expansion`` fraction of the kept set.
    loss_momentum : float, default=0.9
        Momentum eta of the smoothed per-sample losses.
    initial_trim_multiplier : float, default=3.0
        beta starts at ``initial_trim_multiplier * p`` and falls linearly to
        ``p`` over the following iterations; with ``N = 2 + max(1, min(3,
        floor(1 / p)))`` iterations per component (the reference's schedule).
    class_floor : float, default=0.125
        Each trim also keeps the lowest-loss ``class_floor * beta`` fraction of
        every class, so that no class vanishes from the core set.
    trim_per_class : bool, default=False
        Trim every class to its own ``beta`` quantile of the loss instead
        (``class_floor`` is then moot), so that each core set keeps the class
        proportions of the data. The paper trims all classes together; with
        few classes that makes core sets of nearly one class (on two-class
        CIFAR-10, cat/dog: 2,152 cats and 246 dogs), whose weak learners
        predict that class for every sample and so vote for or against the
        poison by its label alone.
    warmup_epochs : int, default=8
        Epochs of the first ISPL iteration of a component.
    epochs_per_iteration : int, default=4
        Epochs of each later ISPL iteration (same network, continued).
    weak_learner_epochs : int, default=40
        Epochs of the fresh network trained on each final core set.
    weak_learner_trim : float, default=0.0
        Share of each class of its core set that a weak learner leaves out
        of its training, chosen anew every epoch by the learner's own
        smoothed loss: after each epoch every core-set sample is scored
        (momentum :data:`WEAK_LEARNER_LOSS_MOMENTUM`) and the next epoch
        trains on the lowest-loss ``1 - weak_learner_trim`` of each class.
        0 trains on the whole core set, as the paper does. Not in the paper:
        a core set is rarely free of poison, and on two-class CIFAR-10 a
        learner that trains on 5 poisoned images among 2,400 predicts the
        target for 80% of the other poisoned images (24% with none), which
        turns its vote for the poison (docs/benchmarks.md); poison the
        learner has not yet learned has a high loss and is left out. Costs
        one inference pass over the core set per epoch.
    min_votes : int, default=2
        A sample is kept only if its modal vote has at least this many votes
        (the reference's ``count > 1``).
        With ``vote="clusters"``: the number of bags that must flag a sample
        for it to be removed.
    vote_on_own_core : bool, default=True
        Whether a weak learner also votes on the samples of its own core set,
        as the reference code does. False follows Algorithm 2's "each weak
        learner votes on the other clusters" (and Property 3.3, stated for
        disjoint sets): a learner has fitted its own core set, poison
        included, so its vote there says nothing. Each sample then gets the
        votes of the learners whose core sets do not hold it.
    vote : {"mode", "clusters"}, default="mode"
        How the weak learners decide which samples to remove. ``"mode"`` is
        the paper's vote described above. ``"clusters"`` (not in the paper)
        asks, in each bag, the learner of the core set where ISPL gathered
        the poison, which has learned the trigger: every learner's
        representations of every sample are split per class by 2-means, as
        :class:`ActivationClusteringFilter` does, a cluster under 35% of its
        class in a class whose silhouette score exceeds 0.1 is flagged, and
        in each bag the learner whose flagged cluster is the most cohesive
        decides (:mod:`sklearn_backdoor.cluster_vote`). A flagged cluster
        stands only if the bag's other learners misread at least
        ``min_misread`` of its members' labels (Chen et al.'s exclusionary
        reclassification, with the other learners as the networks trained
        without it), so clean sub-styles of a class are not removed; with
        ``n_components=1`` there is no other learner to ask. With no
        cluster standing in any bag it removes nothing and warns. A sample
        is removed when at least ``min_votes`` bags flag it (at most
        ``n_bags``; 1 is the setting measured on the CIFAR-10 tier). It
        keeps the clean images near the class boundary that the mode's
        learners misread, which on hard class pairs are more than 10% of
        the data (docs/benchmarks.md). Needs ``vote_rounds=1`` and, to
        cluster representations (``cluster_features``), a network with a
        ``representation_layer`` (every preset has one);
        ``vote_on_own_core`` does not apply.
        ``self_training`` re-judges the samples by their labels and so
        brings the boundary images' removal back: leave it off.
    cluster_features : {"representations", "saliency", "both"}, \
            default="representations"
        With ``vote="clusters"`` only: what of each weak learner is
        clustered. ``"representations"`` is its representations, as above.
        ``"saliency"`` is each sample's saliency map in it: where in the
        image the learner looks to read the sample's label (gradient x
        input, :mod:`sklearn_backdoor.saliency`); a learner that learned a
        patch trigger looks at the trigger in every poisoned image, so their
        maps cluster even when the trigger makes no cluster in the
        representations (the ell and X triggers of the two-class CIFAR-10
        tier); on flat (non-image) inputs the map is per feature.
        ``"both"`` clusters both, and in each bag the most cohesive
        confirmed cluster of either kind decides. Not in the papers.
    min_misread : float in [0, 1], default=0.5
        With ``vote="clusters"`` only: the share of a flagged cluster's
        members whose labels the bag's other learners must misread for it
        to stand. 0.5 is Chen et al.'s exclusionary-reclassification
        threshold (a ratio of 1 between own-label and other-label readings,
        for two classes); 0 confirms every cluster.
    min_other_class_ratio : float or None, default=None
        With ``vote="clusters"`` only: unless None, a flagged cluster also
        needs the bag's other learners to read its members as one other
        class more than this many times as often as their label (Chen et
        al.'s ratio; their threshold is 1). With two classes, 1 is
        ``min_misread=0.5`` without the tie. With more classes it tells a
        poisoned cluster, read as its one source class, from a clean
        sub-style whose misreadings spread over several classes. Measured
        on the digits grid as the first step of a
        :class:`~sklearn_backdoor.SanitizerChain` (docs/benchmarks.md).
        Not in the papers; None is the rule measured on the CIFAR-10 tier.
    confirming_learners : {"bag", "untrained"}, default="bag"
        With ``vote="clusters"`` only: whose readings ``min_misread`` and
        ``min_other_class_ratio`` count. ``"bag"``: those of the bag's other
        learners, every sample (the rule measured on the CIFAR-10 tier).
        ``"untrained"``: those of every weak learner of every bag whose
        core set does not hold the sample, so each member is judged only by
        networks trained without it, as in Chen et al.'s exclusionary
        reclassification, and by about ``n_bags`` times as many of them.
        On one draw of the digits fits it told a clean sub-style of ones
        (read as twos by one bag's other learner, as ones by the other
        bags') from the poison; on a second draw every untrained learner
        read those ones as twos and it removed them as often as the bag's
        rule with a ratio over 5 (docs/benchmarks.md). Not in the papers.
    exclusionary_retraining : bool, default=False
        With ``vote="clusters"`` only: when the learners of a bag found
        candidate clusters but confirmed none, train one more network, as a
        weak learner, on every sample outside every candidate cluster of
        every learner, and let it alone judge those bags' candidates by the
        same ``min_misread`` (one network for all such bags). Chen et al.'s
        exclusionary reclassification as they ran it: a network that never
        saw a cluster reads a poisoned one as its source class and a clean
        sub-style as its label. It is needed where ISPL splits a strong
        trigger's poison between the core sets of a bag, so that every
        learner of the bag has learned the trigger and reads the poison by
        its poisoned label (two-class CIFAR-10 8-to-6, X trigger, 20%:
        every poisoned image removed, none before). The judge trains
        without the clean candidates too, so on classes a small network
        tells apart badly it misreads them as well (on cat / dog, 75% of a
        clean cluster of 1,423 cats, which stood beside the poison and lost
        only on cohesion; docs/benchmarks.md). Costs one weak learner's
        training, only in fits where a bag confirmed nothing. Not in the
        papers.
    confirm_pasted : bool, default=False
        With ``vote="clusters"`` only: when the learners of a bag found
        candidate clusters but confirmed none (after
        ``exclusionary_retraining``, if set), confirm those candidates
        whose members carry pixel values pasted on them: at least three
        values that 90% of the members share and at most 10% of the rest
        of their class (:mod:`sklearn_backdoor.pasted_pixels`). A patch
        trigger leaves that mark however every learner reads it; a clean
        sub-style rarely does. Costs a pass over the pixels of each
        candidate's class. Not in the papers.
    vote_rounds : int, default=1
        Votes in all. Every vote after the first retrains each weak learner,
        a fresh network, on the samples of its core set that the previous
        vote kept, and all of them vote again. 1 is the paper's single vote.
        Not in the paper: Algorithm 2 assumes core sets wholly clean or
        wholly poisoned, and a learner that trained on a few poisoned images
        vouches for the rest of the poison; the first vote takes most of the
        poison out of its core set. Each later vote costs as much as
        training the weak learners once more.
    later_vote_trim : float or None, default=None
        ``weak_learner_trim`` of the learners retrained for the votes after
        the first; None uses ``weak_learner_trim``. Not in the paper: a
        trimmed first vote keeps the least poison, while its retrained
        learners, on core sets the vote has already cleaned, can afford to
        train on everything (docs/benchmarks.md, "Later votes").
    self_training : bool, default=True
        Run the self-paced self-training step of App. C after boosting.
    self_training_rounds : int, default=20
    self_training_epochs : int, default=5
        Each round trains the same network ``self_training_epochs`` more epochs
        on the current kept set, with a fresh optimiser.
    self_training_momentum : float, default=0.8
        Smoothing of the per-sample correctness; a sample is kept when its
        smoothed correctness exceeds 0.5 (it starts at 0.5).
    balanced_self_training : bool, default=False
        Each self-training round trains on the kept samples with every class
        drawn up (with replacement) to the size of the largest kept class.
        Not in the paper: when the vote removes more clean samples of one
        class than of the others, a network trained on the rest leans to the
        other classes and self-training removes still more of that class
        instead of winning it back (two-class CIFAR-10, docs/benchmarks.md).
    self_training_trim : float, default=0.0
        Share of each class of the kept samples that every self-training
        epoch leaves out by the network's own smoothed loss, as
        ``weak_learner_trim`` does for the weak learners; the first epoch of
        the first round, before the network has a loss, leaves out the share
        of each class with the highest disagreement of the vote. 0 trains on
        all of them, as the paper does. Not in the paper: self-training trains on
        what the vote kept, poison included, and a network that learns the
        trigger from a few dozen kept poisoned images predicts their label
        and so re-admits every poisoned image (docs/benchmarks.md).
    self_training_trim_rounds : int or None, default=None
        Let ``self_training_trim`` fall linearly to 0 over this many rounds:
        round ``r`` (counting from 0) leaves out ``self_training_trim * max(0,
        1 - r / self_training_trim_rounds)`` of each class, so the rounds
        from ``self_training_trim_rounds`` on train on every kept sample, as
        self-paced learning admits harder samples as it goes. None trims by
        ``self_training_trim`` in every round. Not in the paper: a constant
        trim never trains on the hardest clean samples, and self-training
        then removes them (docs/benchmarks.md).
    self_training_folds : int, default=1
        With ``k > 1``, the samples are split at random into ``k`` folds of
        equal class proportions, and each fold is judged in every round by a
        network of its own that trains only on the kept samples of the
        other folds (cross-fitting). Not in the paper, whose one network
        judges the samples it trains on: it memorises the kept ones, poison
        included, keeps them, and once a few kept poisoned images have taught
        it the trigger it re-admits the rest (docs/benchmarks.md). Each round
        trains ``k`` networks on ``(k - 1) / k`` of the kept samples.
    self_training_on_vote : bool, default=False
        Train every self-training round only on the samples the vote kept
        and self-training has not since removed. A sample the vote rejected
        can still return to the mask when the network predicts its label,
        but is never trained on. False trains on every kept sample, as the
        paper does. Not in the paper: there, one correct prediction
        re-admits a sample, it is trained on in the next round, and a few
        re-admitted poisoned images teach the trigger, which re-admits the
        rest (a ratchet measured on digits, docs/benchmarks.md); here the
        network that judges the rejected samples learns only from what the
        vote kept.
    weak_learner_pooling : int, default=1
        The weak learners train and vote on images whose every
        ``weak_learner_pooling`` x ``weak_learner_pooling`` block of pixels
        is replaced by its mean (:func:`~sklearn_backdoor.pooling.block_mean`);
        ISPL still sees the images as they are. 1 is the paper's. Not in
        the paper: a core set is rarely free of poison, and a learner that
        sees a trigger of a few pixels in 15 of its 2,400 images learns it
        (on two-class CIFAR-10, 87% of the unseen poison called the target);
        at a quarter of the resolution the same learner calls 11-20% of it
        the target with up to 50 poisoned images, 4 points less accurate on
        clean images (docs/benchmarks.md). The height and width must be
        multiples of it. A trigger that survives averaging (a blend, a large
        patch) is not weakened.
    self_training_pooling : int or None, default=None
        The same for the self-training network; None uses
        ``weak_learner_pooling``.
    patch_check : int or None, default=None
        After self-training, read every kept sample with the last
        self-training network, with each ``patch_check`` x ``patch_check``
        patch in turn replaced by the median of its class there, and remove
        the groups of samples of one label that another class is read for
        once the same patch is replaced, where that patch is far from the
        rest of their class and is a copy that several samples of the label
        carry (:mod:`sklearn_backdoor.patch_check`). None (the default, and
        the paper's) skips it. Needs images and ``self_training=True``;
        every position of the patch is tried, one pass over the kept
        samples each. Not in the paper: on the 120 digits robustness
        scenarios ``patch_check=2`` removes at least 90% of the poison in
        117, 115 and 115 at seeds 0, 1 and 2 (the paper's ISPL+B: 97, 84
        and 90), removing 10, 10 and 8 clean digits in all, and on the old
        digits grid no clean digit (docs/benchmarks.md). It only finds a
        trigger the last network learned, in a patch of at most this side,
        pasted on at least ``patch_check_min_carriers`` samples.
    patch_check_min_carriers : int, default=6
        ``patch_check`` removes a group only if at least this many samples
        of its label, kept or removed, carry one member's patch.
    patch_check_min_deviation : float, default=4.0
        ``patch_check`` removes a group only if its members' patch is, in
        the median, at least this many times further (L1) from their class's
        median there than the other kept samples of the class are.
    patch_check_tolerance : float, default=0.05
        A sample carries a patch when its own is within this share of the
        members' median L1 distance to the class median of it.
    augment_scoring : bool, default=True
        Compute the trimming losses, the votes and the self-training
        predictions on augmented images (the net's training augmentation), as
        the reference implementation does through its training data loader.
        False scores clean images.
    random_state : int, RandomState instance or None, default=None
        Seeds the data subsampling, every network and every augmentation.
    n_jobs : int or None, default=None
        Bags run in parallel threads, each on a CUDA stream of its own (useful
        on a GPU, whose kernels from small batches otherwise leave it idle).
        The result does not depend on ``n_jobs``.
    {{device}}
    verbose : int, default=0
        Show tqdm progress bars when positive: over each bag's components,
        over the epochs of each weak learner (its longest training) and over
        the self-training rounds.

    Attributes
    ----------
    mask_ : ndarray of bool, shape (n_samples,)
        True for the samples to keep.
    sample_indices_ : ndarray of int
        Indices of the kept samples.
    scores_ : ndarray of float, shape (n_samples,)
        Fraction of weak learners whose prediction differs from the label:
        higher means more suspicious.
    components_ : list of ndarray of int
        Indices of each core set, in the order found (bag-major).
    component_bags_ : ndarray of int
        The bag of each component.
    weak_learners_ : list of skorch.NeuralNetClassifier
        The network trained on each core set (on images pooled by
        ``weak_learner_pooling``: pass them through
        :func:`~sklearn_backdoor.pooling.block_mean` before predicting).
    votes_ : ndarray of shape (n_learners, n_samples)
        Each weak learner's predicted class (in ``classes_``) for each sample.
    boosting_mask_ : ndarray of bool, shape (n_samples,)
        The decision of the (last) vote, before self-training.
    boosting_masks_ : list of ndarray of bool
        The decision of each of the ``vote_rounds`` votes, in order; the
        last is ``boosting_mask_``. ``weak_learners_`` and ``votes_`` are
        those of the last vote.
    poison_rich_components_ : ndarray of int, shape (n_bags,)
        With ``vote="clusters"`` only: the index (into ``components_``) of
        the core set whose learner decides in each bag; -1 where no learner
        of the bag flagged a cluster.
    cluster_flags_ : ndarray of bool, shape (n_bags, n_samples)
        With ``vote="clusters"`` only: which samples each bag flags.
    cluster_cohesion_ : ndarray of float, shape (n_bags,)
        With ``vote="clusters"`` only: the silhouette score of the class
        whose cluster the deciding learner of each bag flagged (-inf where
        none was flagged).
    poison_rich_features_ : ndarray of str, shape (n_bags,)
        With ``vote="clusters"`` only: what the deciding learner's flagged
        cluster was found in (``"representations"`` or ``"saliency"``); ""
        where no learner of the bag flagged a cluster.
    exclusion_judge_ : skorch.NeuralNetClassifier or None
        With ``vote="clusters"`` only: the network that judged the bags
        whose learners confirmed no candidate (``exclusionary_retraining``);
        None when none was trained.
    exclusion_judged_bags_ : ndarray of bool, shape (n_bags,)
        With ``vote="clusters"`` only: the bags it judged.
    pasted_judged_bags_ : ndarray of bool, shape (n_bags,)
        With ``vote="clusters"`` only: the bags whose candidates
        ``confirm_pasted`` judged (none without it).
    cluster_findings_ : list of dict
        With ``vote="clusters"`` only: for each weak learner, a
        :class:`~sklearn_backdoor.cluster_vote.ClusterFindings` for each of
        ``cluster_features`` (``"representations"``, ``"saliency"``): its
        clusters, the ones small and cohesive enough to be poison before the
        other learners confirm them, the silhouette scores and the other
        learners' misread shares.
    self_training_correctness_ : ndarray of float or None
        Smoothed correctness at the end of self-training (None without it).
    phase_seconds_ : dict
        Wall-clock seconds of ``"clustering"`` (the bags: ISPL and the weak
        learners), ``"voting"`` (with ``vote_rounds > 1`` also the retrained
        learners), ``"self_training"`` and, with ``patch_check``,
        ``"patch_check"``, device work included.
    component_seconds_ : ndarray of shape (n_components_found, 2)
        Seconds of each component's core-set search (Algorithm 1) and of its
        weak learner's training. With ``n_jobs > 1`` the bags overlap, so
        these add up to more than ``phase_seconds_["clustering"]``.
    final_net_ : skorch.NeuralNetClassifier
        The self-training network after its last round (only with
        ``self_training=True``), on images pooled by its block size.
    patch_groups_ : list of PatchGroup or None
        With ``patch_check`` only: every group of kept samples that flipped
        when one patch was replaced
        (:class:`~sklearn_backdoor.patch_check.PatchGroup`), largest first,
        each saying whether it was removed; None without it.
    {{network_attributes}}

    Notes
    -----
    Where the paper and the reference differ, the reference is followed:
    the first component of each bag starts from a random half of the data;
    later components start from all remaining samples; the expansion subset
    is drawn per sample with probability ``expansion``; trimming keeps the
    samples at or under the ``beta`` quantile of the smoothed loss, plus the
    per-class floor. Unlike the reference, which stops a bag once 2,000 or
    fewer samples remain, small data sets are clustered too: a bag stops
    (with a :class:`~sklearn_backdoor.BackdoorWarning`) only when fewer than
    two samples remain to train on.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor import IncompatibilityClustering
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 6).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> ic = IncompatibilityClustering(n_components=2, n_bags=1, warmup_epochs=1,
    ...     epochs_per_iteration=1, weak_learner_epochs=2, self_training=False,
    ...     random_state=0).fit(X, y)
    >>> ic.mask_.shape, len(ic.weak_learners_)
    ((200,), 2)
    """

    _parameter_constraints: dict = {
        **NetworkEstimatorMixin._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "component_fraction": [None, Interval(Real, 0, 1, closed="right")],
        "n_bags": [Interval(Integral, 1, None, closed="left")],
        "expansion": [Interval(Real, 0, 1, closed="right")],
        "loss_momentum": [Interval(Real, 0, 1, closed="left")],
        "initial_trim_multiplier": [Interval(Real, 1, None, closed="left")],
        "class_floor": [Interval(Real, 0, 1, closed="both")],
        "trim_per_class": ["boolean"],
        "warmup_epochs": [Interval(Integral, 1, None, closed="left")],
        "epochs_per_iteration": [Interval(Integral, 1, None, closed="left")],
        "weak_learner_epochs": [Interval(Integral, 1, None, closed="left")],
        "weak_learner_trim": [Interval(Real, 0, 1, closed="left")],
        "min_votes": [Interval(Integral, 1, None, closed="left")],
        "vote_on_own_core": ["boolean"],
        "vote": [StrOptions({"mode", "clusters"})],
        "cluster_features": [StrOptions({"representations", "saliency", "both"})],
        "min_misread": [Interval(Real, 0, 1, closed="both")],
        "min_other_class_ratio": [None, Interval(Real, 0, None, closed="left")],
        "confirming_learners": [StrOptions({"bag", "untrained"})],
        "exclusionary_retraining": ["boolean"],
        "confirm_pasted": ["boolean"],
        "vote_rounds": [Interval(Integral, 1, None, closed="left")],
        "later_vote_trim": [None, Interval(Real, 0, 1, closed="left")],
        "self_training": ["boolean"],
        "self_training_rounds": [Interval(Integral, 1, None, closed="left")],
        "self_training_epochs": [Interval(Integral, 1, None, closed="left")],
        "self_training_momentum": [Interval(Real, 0, 1, closed="left")],
        "balanced_self_training": ["boolean"],
        "self_training_trim": [Interval(Real, 0, 1, closed="left")],
        "self_training_trim_rounds": [None, Interval(Integral, 1, None, closed="left")],
        "self_training_folds": [Interval(Integral, 1, None, closed="left")],
        "self_training_on_vote": ["boolean"],
        "weak_learner_pooling": [Interval(Integral, 1, None, closed="left")],
        "self_training_pooling": [None, Interval(Integral, 1, None, closed="left")],
        "patch_check": [None, Interval(Integral, 1, None, closed="left")],
        "patch_check_min_carriers": [Interval(Integral, 1, None, closed="left")],
        "patch_check_min_deviation": [Interval(Real, 0, None, closed="left")],
        "patch_check_tolerance": [Interval(Real, 0, None, closed="left")],
        "augment_scoring": ["boolean"],
        "n_jobs": [None, Integral],
    }

    def __init__(
        self,
        net=None,
        *,
        n_components=8,
        component_fraction=None,
        n_bags=3,
        expansion=0.25,
        loss_momentum=0.9,
        initial_trim_multiplier=3.0,
        class_floor=0.125,
        trim_per_class=False,
        warmup_epochs=8,
        epochs_per_iteration=4,
        weak_learner_epochs=40,
        weak_learner_trim=0.0,
        min_votes=2,
        vote_on_own_core=True,
        vote="mode",
        cluster_features="representations",
        min_misread=0.5,
        min_other_class_ratio=None,
        confirming_learners="bag",
        exclusionary_retraining=False,
        confirm_pasted=False,
        vote_rounds=1,
        later_vote_trim=None,
        self_training=True,
        self_training_rounds=20,
        self_training_epochs=5,
        self_training_momentum=0.8,
        balanced_self_training=False,
        self_training_trim=0.0,
        self_training_trim_rounds=None,
        self_training_folds=1,
        self_training_on_vote=False,
        weak_learner_pooling=1,
        self_training_pooling=None,
        patch_check=None,
        patch_check_min_carriers=6,
        patch_check_min_deviation=4.0,
        patch_check_tolerance=0.05,
        augment_scoring=True,
        random_state=None,
        n_jobs=None,
        device="auto",
        verbose=0,
    ):
        self.net = net
        self.n_components = n_components
        self.component_fraction = component_fraction
        self.n_bags = n_bags
        self.expansion = expansion
        self.loss_momentum = loss_momentum
        self.initial_trim_multiplier = initial_trim_multiplier
        self.class_floor = class_floor
        self.trim_per_class = trim_per_class
        self.warmup_epochs = warmup_epochs
        self.epochs_per_iteration = epochs_per_iteration
        self.weak_learner_epochs = weak_learner_epochs
        self.weak_learner_trim = weak_learner_trim
        self.min_votes = min_votes
        self.vote_on_own_core = vote_on_own_core
        self.vote = vote
        self.cluster_features = cluster_features
        self.min_misread = min_misread
        self.min_other_class_ratio = min_other_class_ratio
        self.confirming_learners = confirming_learners
        self.exclusionary_retraining = exclusionary_retraining
        self.confirm_pasted = confirm_pasted
        self.vote_rounds = vote_rounds
        self.later_vote_trim = later_vote_trim
        self.self_training = self_training
        self.self_training_rounds = self_training_rounds
        self.self_training_epochs = self_training_epochs
        self.self_training_momentum = self_training_momentum
        self.balanced_self_training = balanced_self_training
        self.self_training_trim = self_training_trim
        self.self_training_trim_rounds = self_training_trim_rounds
        self.self_training_folds = self_training_folds
        self.self_training_on_vote = self_training_on_vote
        self.weak_learner_pooling = weak_learner_pooling
        self.self_training_pooling = self_training_pooling
        self.patch_check = patch_check
        self.patch_check_min_carriers = patch_check_min_carriers
        self.patch_check_min_deviation = patch_check_min_deviation
        self.patch_check_tolerance = patch_check_tolerance
        self.augment_scoring = augment_scoring
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device
        self.verbose = verbose

    def _fit_mask(self, X_t, y_t, rng):
        if not self.vote_on_own_core and self.n_components < 2:
            raise ValueError(
                "vote_on_own_core=False needs n_components >= 2 (with one core "
                f"set per bag no learner could vote), got n_components="
                f"{self.n_components}"
            )
        self._check_cluster_vote()
        check_block_size(
            self.input_shape_, self.weak_learner_pooling, "weak_learner_pooling"
        )
        check_block_size(
            self.input_shape_, self._self_training_block(), "self_training_pooling"
        )
        self._check_patch_parameters()
        y = y_t.cpu().numpy()
        X_weak = block_mean(X_t, self.weak_learner_pooling)
        bag_seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_bags)
        with self._phase("clustering"):
            bags = Parallel(n_jobs=self.n_jobs, prefer="threads")(
                delayed(self._cluster_one_bag)(
                    X_t, X_weak, y_t, y, np.random.RandomState(seed)
                )
                for seed in bag_seeds
            )
        found = [component for bag in bags for component in bag]
        self.components_ = [core for core, _, _ in found]
        self.weak_learners_ = [net for _, net, _ in found]
        self.component_seconds_ = np.array(
            [seconds for _, _, seconds in found], dtype=float
        ).reshape(-1, 2)
        self.component_bags_ = np.repeat(
            np.arange(len(bags)), [len(bag) for bag in bags]
        )
        with self._phase("voting"):
            keep, disagreement = self._vote(X_weak, y_t, y, rng)
            self.boosting_masks_ = [keep]
            for _ in range(1, self.vote_rounds):
                self.weak_learners_ = self._retrain_weak_learners(
                    X_weak, y_t, y, keep, rng
                )
                keep, disagreement = self._vote(X_weak, y_t, y, rng)
                self.boosting_masks_.append(keep)
        self.boosting_mask_ = keep
        self.self_training_correctness_ = None
        with self._phase("self_training"):
            if self.self_training:
                X_self = block_mean(X_t, self._self_training_block())
                keep = self._self_train(
                    X_self, y_t, y, keep, rng, disagreement=disagreement
                )
        self.patch_groups_ = None
        if self.patch_check is not None:
            with self._phase("patch_check"):
                keep = self._check_patches(X_self, y, keep)
        return keep, disagreement

    def _check_patch_parameters(self):
        if self.patch_check is None:
            return
        if not self.self_training:
            raise ValueError(
                "patch_check reads the samples with the last self-training "
                f"network, so it needs self_training=True; got patch_check="
                f"{self.patch_check} with self_training=False"
            )
        if len(self.input_shape_) != 3:
            raise ValueError(
                f"patch_check={self.patch_check} needs images; got samples of "
                f"shape {self.input_shape_} (flat features have no patches)"
            )
        side = min(self.input_shape_[1:]) // self._self_training_block()
        if self.patch_check > side:
            raise ValueError(
                f"patch_check={self.patch_check} is larger than the images the "
                f"self-training network reads ({side} px on their shorter side)"
            )

    def _check_patches(self, X_self, y, keep):
        """Remove the kept samples whose label rests on a patch unlike the rest
        of their class (:mod:`sklearn_backdoor.patch_check`). Nothing to
        check when self-training kept nothing or stopped before its first
        network."""
        if self.final_net_ is None or not keep.any():
            self.patch_groups_ = []
            return keep
        medians = class_medians(X_self, y, keep, len(self.classes_))
        kept = np.flatnonzero(keep)
        readings = lowest_label_readings(
            self.final_net_,
            X_self[torch.as_tensor(kept, device=X_self.device)],
            y[kept],
            medians,
            self.patch_check,
        )
        lowest = np.ones(len(y))
        positions = np.full((len(y), 2), -1)
        read_as = np.full(len(y), -1)
        lowest[kept], positions[kept], read_as[kept] = readings
        self.patch_groups_ = patch_groups(
            X_self,
            y,
            keep,
            (lowest, positions, read_as),
            medians,
            self.patch_check,
            min_carriers=self.patch_check_min_carriers,
            min_deviation=self.patch_check_min_deviation,
            tolerance=self.patch_check_tolerance,
        )
        keep = keep.copy()
        for group in self.patch_groups_:
            if group.removed:
                keep[group.members] = False
        return keep

    def _check_cluster_vote(self):
        if self.vote != "clusters":
            return
        if self.vote_rounds != 1:
            raise ValueError(
                "vote='clusters' needs vote_rounds=1 (a learner retrained on "
                f"what the vote kept no longer knows the trigger), got "
                f"vote_rounds={self.vote_rounds}"
            )
        if self.min_votes > self.n_bags:
            raise ValueError(
                "with vote='clusters', min_votes is the number of bags that must "
                f"flag a sample, at most n_bags={self.n_bags}; got min_votes="
                f"{self.min_votes}"
            )

    def _self_training_block(self):
        """The block size of the self-training network's images."""
        if self.self_training_pooling is None:
            return self.weak_learner_pooling
        return self.self_training_pooling

    def _vote(self, X_t, y_t, y, rng):
        """Every weak learner predicts every sample; ``vote_by_mode`` decides.
        Sets ``votes_``; returns ``(keep, disagreement)``."""
        representations = None
        if self._vote_reads_representations():
            # One forward pass per learner gives its vote and the
            # representations that the cluster vote clusters.
            passes = [logits_and_representations(n, X_t) for n in self.weak_learners_]
            votes = np.stack([_argmax(logits) for logits, _ in passes])
            representations = [features for _, features in passes]
        else:
            votes = np.stack([self._predict(n, X_t) for n in self.weak_learners_])
        self.votes_ = self.classes_[votes]
        if self.vote == "clusters":
            return self._cluster_vote(X_t, y_t, y, votes, rng, representations)
        eligible = None
        if not self.vote_on_own_core:
            eligible = ~in_core_sets(self.components_, len(y))
        return vote_by_mode(votes, y, self.min_votes, rng, eligible=eligible)

    def _vote_reads_representations(self):
        """Whether the vote clusters representations of the same, unaugmented
        images that the learners vote on, so one pass can give both."""
        return (
            self.vote == "clusters"
            and self.cluster_features in ("representations", "both")
            and not self.augment_scoring
        )

    def _cluster_vote(self, X_t, y_t, y, votes, rng, representations=None):
        """``vote="clusters"``: in each bag, the learner with the most
        cohesive small cluster that the bag's other learners misread flags
        it (with ``exclusionary_retraining``, a bag whose learners confirm
        none asks :meth:`_exclusion_judge` instead). ``representations``
        (per learner, or None) are those already computed. Sets
        ``poison_rich_components_``, ``poison_rich_features_``,
        ``cluster_flags_``, ``cluster_cohesion_``, ``cluster_findings_``,
        ``exclusion_judge_`` and ``exclusion_judged_bags_``; returns
        ``(keep, share of bags flagging each sample)``."""
        findings = [{} for _ in self.weak_learners_]
        bags = np.unique(self.component_bags_)
        untrained = ~in_core_sets(self.components_, len(y))
        for bag in bags:
            learners = np.flatnonzero(self.component_bags_ == bag)
            for index in learners:
                known = None if representations is None else representations[index]
                readers = self._confirming_readings(votes, untrained, learners, index)
                for name, features in self._clustered_features(
                    self.weak_learners_[index], X_t, y, known
                ):
                    _, _, findings[index][name] = flag_poison_clusters(
                        features,
                        y,
                        rng.randint(np.iinfo(np.int32).max),
                        min_misread=self.min_misread,
                        min_other_class_ratio=self.min_other_class_ratio,
                        return_findings=True,
                        **readers,
                    )
        self.exclusion_judge_ = None
        self.exclusion_judged_bags_ = np.zeros(len(bags), dtype=bool)
        if self.exclusionary_retraining:
            findings = self._judge_unconfirmed_bags(X_t, y_t, y, findings, rng)
        self.pasted_judged_bags_ = np.zeros(len(bags), dtype=bool)
        if self.confirm_pasted:
            findings = self._confirm_pasted_in_unconfirmed_bags(X_t, y, findings)
        chosen, chosen_features, cohesion, flags = [], [], [], []
        for bag in bags:
            sources = [
                (index, name)
                for index in np.flatnonzero(self.component_bags_ == bag)
                for name in findings[index]
            ]
            candidates = [_flags(findings[i][name], y) for i, name in sources]
            index, flagged = most_cohesive(candidates)
            chosen.append(sources[index][0] if index >= 0 else -1)
            chosen_features.append(sources[index][1] if index >= 0 else "")
            cohesion.append(candidates[index][1] if index >= 0 else -np.inf)
            flags.append(flagged)
        self.cluster_findings_ = findings
        self.poison_rich_components_ = np.array(chosen, dtype=np.int64)
        self.poison_rich_features_ = np.array(chosen_features, dtype=object)
        self.cluster_cohesion_ = np.array(cohesion)
        self.cluster_flags_ = np.stack(flags)
        if (self.poison_rich_components_ < 0).all():
            warnings.warn(
                "vote='clusters' found no small, cohesive cluster that the other "
                "weak learners misread in any bag, so it removes nothing: the data "
                "may be clean, or its trigger may make no cluster of its own.",
                BackdoorWarning,
                stacklevel=2,
            )
        n_flagging = self.cluster_flags_.sum(axis=0)
        return n_flagging < self.min_votes, n_flagging / len(flags)

    def _confirming_readings(self, votes, untrained, learners, index):
        """The readings that confirm learner ``index``'s clusters, as
        :func:`flag_poison_clusters` takes them (``confirming_learners``):
        the other learners of its bag (``learners``), or every learner where
        ``untrained`` (not in its core set)."""
        if self.confirming_learners == "untrained":
            return {"other_predictions": votes, "other_eligible": untrained}
        return {"other_predictions": _others(votes, learners, index)}

    def _judge_unconfirmed_bags(self, X_t, y_t, y, findings, rng):
        """``exclusionary_retraining``: the bags whose learners found
        candidate clusters but confirmed none have their candidates judged
        again, by :meth:`_exclusion_judge` alone. Returns ``findings`` with
        those bags' misread shares and confirmations replaced."""
        unconfirmed = self._unconfirmed_bags(findings)
        if not unconfirmed:
            return findings
        every = [found for learner in findings for found in learner.values()]
        judge = self._exclusion_judge(X_t, y_t, y, candidate_members(every, y), rng)
        readings = self._predict(judge, X_t)[None]
        findings = self._judged_again(
            findings,
            unconfirmed,
            lambda found: confirm_candidates(
                found, y, readings, self.min_misread, self.min_other_class_ratio
            ),
        )
        self.exclusion_judge_ = judge
        self.exclusion_judged_bags_[unconfirmed] = True
        return findings

    def _confirm_pasted_in_unconfirmed_bags(self, X_t, y, findings):
        """``confirm_pasted``: the bags whose learners found candidate
        clusters but confirmed none have them confirmed by
        :func:`~sklearn_backdoor.pasted_pixels.confirm_pasted` instead.
        Returns ``findings`` with those bags' confirmations replaced."""
        unconfirmed = self._unconfirmed_bags(findings)
        findings = self._judged_again(
            findings, unconfirmed, lambda found: confirm_pasted(found, X_t, y)
        )
        self.pasted_judged_bags_[unconfirmed] = True
        return findings

    def _unconfirmed_bags(self, findings):
        """The bags whose learners found candidate clusters but confirmed
        none."""
        return [
            bag
            for bag in np.unique(self.component_bags_)
            if _only_unconfirmed(self._bag_findings(findings, bag))
        ]

    def _judged_again(self, findings, bags, judge):
        """``findings`` with every finding of the learners of ``bags``
        replaced by ``judge(finding)``."""
        findings = list(findings)
        for bag in bags:
            for index in np.flatnonzero(self.component_bags_ == bag):
                findings[index] = {
                    name: judge(found) for name, found in findings[index].items()
                }
        return findings

    def _bag_findings(self, findings, bag):
        """Every :class:`ClusterFindings` of the learners of ``bag``."""
        return [
            found
            for index in np.flatnonzero(self.component_bags_ == bag)
            for found in findings[index].values()
        ]

    def _exclusion_judge(self, X_t, y_t, y, excluded, rng):
        """Chen et al.'s exclusionary reclassification: a fresh network,
        trained as a weak learner on every sample outside ``excluded`` (the
        candidate clusters of every learner), reads a poisoned cluster as
        its source class and a clean sub-style of a class as its label."""
        rows = _at_least_two(np.flatnonzero(~excluded), np.arange(len(y)))
        return self._train_weak_learner(X_t, y_t, y, rows, rng, "exclusionary judge")

    def _clustered_features(self, net, X_t, y, representations=None):
        """``(name, features)`` of each of ``net``'s features that the cluster
        vote clusters (``cluster_features``), computed when asked for unless
        ``representations`` are given: on a GPU, tensors left there to be
        clustered there (:mod:`sklearn_backdoor.device_clustering`); on the
        CPU, arrays."""
        on_device = clusters_on_device(X_t)
        if self.cluster_features in ("representations", "both"):
            if representations is None:
                representations = extract_representations(net, X_t)
            if not on_device:
                representations = representations.cpu().numpy()
            yield "representations", representations
        if self.cluster_features in ("saliency", "both"):
            yield "saliency", input_saliency(net, X_t, y, as_tensor=on_device)

    def _retrain_weak_learners(self, X_t, y_t, y, keep, rng):
        """A fresh weak learner per core set, trained on the samples of the
        core set that ``keep`` keeps (the whole core set if it keeps fewer
        than two), trimmed by ``later_vote_trim``."""
        trim = self.later_vote_trim
        if trim is None:
            trim = self.weak_learner_trim
        return [
            self._train_weak_learner(
                X_t,
                y_t,
                y,
                _at_least_two(core[keep[core]], core),
                rng,
                f"weak learner {index + 1}",
                trim,
            )
            for index, core in enumerate(self.components_)
        ]

    def _cluster_one_bag(self, X_t, X_weak, y_t, y, rng):
        """One ISPL run on ``X_t``: ``n_components`` core sets and their weak
        learners, trained on ``X_weak`` (the images the learners see).

        Returns ``(core indices, weak learner, (search seconds, weak-learner
        seconds))`` per component. The bag runs on a CUDA stream of its own,
        so that bags in parallel threads share the GPU.
        """
        with side_stream(self.device_):
            return self._cluster_on_current_stream(X_t, X_weak, y_t, y, rng)

    def _cluster_on_current_stream(self, X_t, X_weak, y_t, y, rng):
        n = len(y)
        fraction = self.component_fraction or 0.96 / self.n_components
        active = np.ones(n, dtype=bool)
        learners = []
        components = tqdm(
            range(self.n_components),
            desc="ISPL components",
            disable=not self.verbose,
            leave=False,
        )
        for index in components:
            if active.sum() < 2:
                warnings.warn(
                    f"ISPL stopped after {index} of {self.n_components} components: "
                    f"only {active.sum()} samples remain.",
                    BackdoorWarning,
                    stacklevel=2,
                )
                break
            target = min(1.0, fraction * n / active.sum())
            start_from_half = index == 0
            with Stopwatch(self.device_) as search:
                core = self._grow_core_set(
                    X_t, y_t, y, active, target, start_from_half, rng
                )
            with Stopwatch(self.device_) as weak_training:
                weak = self._train_weak_learner(
                    X_weak, y_t, y, core, rng, f"weak learner {index + 1}"
                )
            learners.append((core, weak, (search.seconds, weak_training.seconds)))
            active[core] = False
        return learners

    def _grow_core_set(self, X_t, y_t, y, active, target, start_from_half, rng):
        """Algorithm 1 on the active samples; returns the core set's indices."""
        active_idx = np.flatnonzero(active)
        n_iterations = ispl_iterations(target)
        if n_iterations == 0:
            return active_idx
        train_idx = active_idx
        if start_from_half:
            train_idx = active_idx[rng.binomial(1, 0.5, len(active_idx)) == 1]
        net = self._new_net(rng)
        smoothed = np.zeros(len(active_idx))
        keep = np.ones(len(active_idx), dtype=bool)
        for iteration in range(n_iterations):
            epochs = self.warmup_epochs if iteration == 0 else self.epochs_per_iteration
            train_net(
                net,
                *_rows(X_t, y_t, _at_least_two(train_idx, active_idx[keep])),
                epochs=epochs,
                warm_start=iteration > 0,
            )
            losses = self._losses(net, X_t[active_idx], y_t[active_idx])
            smoothed = self.loss_momentum * smoothed + (1 - self.loss_momentum) * losses
            beta = self._trim_fraction(iteration, n_iterations, target)
            keep = trim_by_loss(
                smoothed,
                y[active_idx],
                beta,
                self.class_floor,
                per_class=self.trim_per_class,
            )
            sampled = rng.binomial(1, self.expansion, len(active_idx)) == 1
            train_idx = active_idx[keep & sampled]
        return active_idx[keep]

    def _train_weak_learner(self, X_t, y_t, y, core, rng, name, trim=None):
        """A fresh network trained on the rows ``core`` (a core set, for its
        vote), trimmed by ``trim`` (``weak_learner_trim`` when None);
        ``name`` titles its progress bar."""
        return self._train_trimmed(
            self._new_net(rng),
            X_t,
            y_t,
            y,
            core,
            epochs=self.weak_learner_epochs,
            trim=self.weak_learner_trim if trim is None else trim,
            warm_start=False,
            title=self._progress(name),
        )

    def _train_trimmed(
        self,
        net,
        X_t,
        y_t,
        y,
        rows,
        *,
        epochs,
        trim,
        warm_start,
        title=None,
        first_scores=None,
    ):
        """Train ``net`` on ``rows`` for ``epochs`` epochs, each epoch on the
        lowest-loss ``1 - trim`` share of each class of ``rows`` by the net's
        own loss smoothed over the epochs (:data:`WEAK_LEARNER_LOSS_MOMENTUM`).
        The first epoch of a fresh net has no loss to judge by: it trims by
        ``first_scores`` instead (e.g. the vote's disagreement), or trains on
        every row. ``trim=0`` trains on every row throughout."""
        X_rows, y_rows = _rows(X_t, y_t, rows)
        if trim == 0:
            return train_net(
                net,
                X_rows,
                y_rows,
                epochs=epochs,
                warm_start=warm_start,
                progress=title,
            )
        smoothed = np.zeros(len(rows))
        epoch_bar = tqdm(range(epochs), desc=title, disable=title is None, leave=False)
        for epoch in epoch_bar:
            continuing = warm_start or epoch > 0
            scores = first_scores
            if continuing:
                losses = self._losses(net, X_rows, y_rows)
                momentum = WEAK_LEARNER_LOSS_MOMENTUM
                scores = smoothed = momentum * smoothed + (1 - momentum) * losses
            train_rows = rows
            if scores is not None:
                kept = trim_by_loss(scores, y[rows], 1 - trim, 0.0, per_class=True)
                train_rows = _at_least_two(rows[kept], rows)
            train_rows = _rows(X_t, y_t, train_rows)
            train_net(net, *train_rows, epochs=1, warm_start=continuing)
        return net

    def _trim_fraction(self, iteration, n_iterations, target):
        """beta_t: ``initial_trim_multiplier * p`` falling linearly to ``p``."""
        steps_left = n_iterations - 2 - iteration
        multiplier = min(self.initial_trim_multiplier, max(1, steps_left))
        return float(np.clip(multiplier * target, 0, 1))

    def _self_train(self, X_t, y_t, y, keep, rng, disagreement=None):
        """App. C self-paced self-training, seeded with the boosting mask.

        ``disagreement`` (the vote's, per sample) is what the first epoch
        trims by with ``self_training_trim``, before the network has a loss.
        """
        correctness = self._initial_correctness(keep, y)
        trainable = self._self_training_trainable(keep)
        folds = self._self_training_folds_of(y, rng)
        nets = [None] * self.self_training_folds
        rounds = tqdm(
            range(self.self_training_rounds),
            desc="self-training",
            disable=not self.verbose,
            leave=False,
        )
        for round_index in rounds:
            training = [
                keep & trainable & self._trains_on(folds, fold)
                for fold in range(len(nets))
            ]
            if min(rows.sum() for rows in training) < 2:
                warnings.warn(
                    "Self-training stopped: fewer than 2 samples are kept.",
                    BackdoorWarning,
                    stacklevel=2,
                )
                break
            for fold, rows in enumerate(training):
                nets[fold] = self._self_training_round(
                    nets[fold], X_t, y_t, y, rows, round_index, rng, disagreement
                )
            correct = self._self_training_predictions(nets, X_t, folds) == y
            momentum = self.self_training_momentum
            correctness = (1 - momentum) * correct + momentum * correctness
            keep = correctness > 0.5
        self.self_training_correctness_ = correctness
        self.final_net_ = nets[0]
        return keep

    def _self_training_trainable(self, vote_keep):
        """The samples self-training may ever train on: those the vote kept
        with ``self_training_on_vote``, else all of them (the paper's)."""
        if self.self_training_on_vote:
            return vote_keep.copy()
        return np.ones(len(vote_keep), dtype=bool)

    def _self_training_folds_of(self, y, rng):
        """Each sample's fold: the network of fold ``k`` trains on the kept
        samples of the other folds and judges fold ``k``. One fold (the
        paper's) is every sample, judged by the network that trains on it."""
        folds = np.zeros(len(y), dtype=int)
        if self.self_training_folds == 1:
            return folds
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            folds[members] = np.arange(len(members)) % self.self_training_folds
        return folds

    def _trains_on(self, folds, fold):
        """The samples whose fold the network of ``fold`` may train on."""
        if self.self_training_folds == 1:
            return np.ones(len(folds), dtype=bool)
        return folds != fold

    def _self_training_round(
        self, net, X_t, y_t, y, training, round_index, rng, disagreement
    ):
        """One round: ``net`` (a fresh one in the first) trained
        ``self_training_epochs`` more epochs on the samples ``training``."""
        continuing = net is not None
        if continuing:
            net.initialize_optimizer()
        else:
            net = self._new_net(rng)
        rows = np.flatnonzero(training)
        if self.balanced_self_training:
            rows = oversample_to_balance(rows, y, rng)
        first_scores = None if disagreement is None else disagreement[rows]
        return self._train_trimmed(
            net,
            X_t,
            y_t,
            y,
            rows,
            epochs=self.self_training_epochs,
            trim=self._self_training_trim_of(round_index),
            warm_start=continuing,
            first_scores=first_scores,
        )

    def _self_training_predictions(self, nets, X_t, folds):
        """Each sample's label as predicted by its fold's network, which
        predicts only the samples of its fold."""
        if len(nets) == 1:
            return self._predict(nets[0], X_t)
        predicted = np.empty(len(folds), dtype=int)
        for fold, net in enumerate(nets):
            judged = np.flatnonzero(folds == fold)
            index = torch.as_tensor(judged, device=X_t.device)
            predicted[judged] = self._predict(net, X_t[index])
        return predicted

    def _self_training_trim_of(self, round_index):
        """The trim of self-training round ``round_index`` (from 0)."""
        if self.self_training_trim_rounds is None:
            return self.self_training_trim
        remaining = 1 - round_index / self.self_training_trim_rounds
        return self.self_training_trim * max(0.0, remaining)

    def _initial_correctness(self, keep, y):
        """Smoothed correctness before the first self-training round: 0.5 for
        every sample (App. C), so one correct prediction admits a sample."""
        return np.full(len(y), 0.5)

    def _scoring_augmentation(self, net):
        return train_augmentation(net) if self.augment_scoring else None

    def _losses(self, net, X, y):
        logits = predict_logits(net, X, augmentation=self._scoring_augmentation(net))
        losses = per_sample_loss(logits, y).cpu().numpy()
        return nonfinite_as_worst(losses, what="per-sample loss")

    def _predict(self, net, X_t):
        logits = predict_logits(net, X_t, augmentation=self._scoring_augmentation(net))
        return logits.argmax(dim=1).cpu().numpy()


WEAK_LEARNER_LOSS_MOMENTUM = 0.5
"""Momentum of the smoothed loss by which a network trims its training set
(``weak_learner_trim``, ``self_training_trim``); the loss of each epoch
weighs as much as all before it."""


def ispl_iterations(target):
    """Iterations N of ISPL for a target fraction ``p`` of the active set.

    ``N = 2 + max(1, min(3, floor(1 / p)))`` as in the reference code; 0 when
    the target is the whole active set (it is taken as the core set).
    """
    if target >= 0.999:
        return 0
    return 2 + max(1, min(3, int(1 // target)))


def trim_by_loss(losses, labels, beta, class_floor, *, per_class=False):
    """TRIM of Algorithm 1 with the per-class floor of App. C.

    Keeps the samples whose loss is at most the ``beta`` quantile of all
    losses, plus in every class those at most the ``class_floor * beta``
    quantile of that class's losses. With ``per_class=True`` every class
    keeps exactly the samples at most its own ``beta`` quantile instead.
    """
    keep = np.zeros(len(losses), dtype=bool)
    if not per_class:
        keep = losses <= np.quantile(losses, beta)
    fraction = beta if per_class else beta * class_floor
    for label in np.unique(labels):
        in_class = labels == label
        cutoff = np.quantile(losses[in_class], fraction)
        keep[in_class] |= losses[in_class] <= cutoff
    return keep


def vote_by_mode(votes, labels, min_votes, rng, *, eligible=None):
    """Algorithm 2 as per-sample modal vote (App. C and the reference).

    Parameters
    ----------
    votes : ndarray of int, shape (n_learners, n_samples)
        Encoded class predicted by each weak learner.
    labels : ndarray of int, shape (n_samples,)
    min_votes : int
        The mode must have at least this many votes.
    rng : RandomState
        Breaks ties between equally frequent classes uniformly at random.
    eligible : ndarray of bool, shape (n_learners, n_samples), default=None
        Which learner votes on which sample; None means every learner votes
        on every sample.

    Returns
    -------
    keep : ndarray of bool
        Modal vote equals the label and has at least ``min_votes`` votes.
    disagreement : ndarray of float
        Fraction of the voting learners whose vote differs from the label
        (1 for a sample no learner votes on).
    """
    if eligible is None:
        eligible = np.ones(votes.shape, dtype=bool)
    n_classes = max(int(votes.max()), int(labels.max())) + 1
    samples = np.arange(votes.shape[1])
    counts = np.zeros((n_classes, votes.shape[1]), dtype=np.int64)
    for learner_votes, voting in zip(votes, eligible, strict=True):
        np.add.at(counts, (learner_votes[voting], samples[voting]), 1)
    top = counts.max(axis=0)
    tie_break = rng.random_sample(counts.shape) * (counts == top)
    mode = tie_break.argmax(axis=0)
    keep = (mode == labels) & (top >= min_votes)
    n_voting = eligible.sum(axis=0)
    agreeing = counts[labels, samples]
    disagreement = 1.0 - agreeing / np.maximum(n_voting, 1)
    return keep, disagreement


def oversample_to_balance(rows, labels, rng):
    """``rows`` plus, for every class of ``labels[rows]`` smaller than the
    largest, rows of that class drawn with replacement until it is as large.
    """
    classes, counts = np.unique(labels[rows], return_counts=True)
    extra = [
        rng.choice(rows[labels[rows] == label], counts.max() - count)
        for label, count in zip(classes, counts, strict=True)
    ]
    return np.concatenate([rows, *extra])


def in_core_sets(components, n_samples):
    """``(n_components, n_samples)`` bool: whether each sample is in each
    core set."""
    member = np.zeros((len(components), n_samples), dtype=bool)
    for index, core in enumerate(components):
        member[index, core] = True
    return member


def _argmax(logits):
    return logits.argmax(dim=1).cpu().numpy()


def _rows(X_t, y_t, indices):
    index = torch.as_tensor(indices, device=X_t.device)
    return X_t[index], y_t[index]


def _others(votes, learners, index):
    """The votes of a bag's learners other than ``index``; None if it has
    no others (then a flagged cluster stands unconfirmed)."""
    others = learners[learners != index]
    return votes[others] if len(others) else None


def _flags(findings, labels):
    """:func:`~sklearn_backdoor.cluster_vote.flags_of`, with the samples the
    learner could not cluster (a representation that is not finite) flagged
    as the most suspicious, as :func:`flag_poison_clusters` flags them."""
    flagged, cohesion = flags_of(findings, labels)
    return flagged | (findings.clusters == NO_CLUSTER), cohesion


def _at_least_two(indices, fallback):
    """The expansion draw may leave too few samples for BatchNorm to train."""
    return indices if len(indices) >= 2 else fallback


def _only_unconfirmed(findings):
    """Whether ``findings`` hold candidate clusters but no confirmed one."""
    return any(found.candidates.any() for found in findings) and not any(
        found.confirmed.any() for found in findings
    )
