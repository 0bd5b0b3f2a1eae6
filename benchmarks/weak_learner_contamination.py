"""How many poisoned images does a weak learner need to trust the trigger?

ISPL+B's vote rests on paper 001's Property 3.3: a network trained on clean
data misclassifies the poison. A core set is rarely perfectly clean, so this
script measures what a few poisoned images in an otherwise clean core set do
to its weak learner on the two-class CIFAR-10 tier: a core set of ``--size``
clean training images drawn at random, plus ``k`` poisoned ones, trained for
``epochs`` epochs with the tier's network, then asked about the poisoned
training images it did *not* see ("trust": the share it predicts as the
target, i.e. the share whose vote it gives to the attacker), and scored on the
clean test images::

    python benchmarks/weak_learner_contamination.py 3-to-5-ell-0.1-seed100 \\
        --k 0 5 15 50 --epochs 10 30 --data PATH/TO/cifar10 \\
        --out benchmarks/results/cifar10-two-class-contamination.jsonl
"""

import argparse
import itertools
import json
import time

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_NET, make_poisoned
from run import two_class_split

from sklearn_backdoor.datasets import load_cifar10
from sklearn_backdoor.inputs import (
    standardization_stats,
    to_float_channels_first,
    to_standardized_tensor,
)
from sklearn_backdoor.pooling import block_mean
from sklearn_backdoor.training import (
    make_net,
    per_sample_loss,
    predict_logits,
    train_net,
)


def core_set_rows(is_poison, size, k, rng):
    """``size`` clean rows and ``k`` poisoned rows, drawn without replacement."""
    clean = rng.choice(np.flatnonzero(~is_poison), size, replace=False)
    poison = rng.choice(np.flatnonzero(is_poison), k, replace=False)
    return np.concatenate([clean, poison])


class WeakLearner:
    """A network trained as ISPL trains its weak learners (the preset's
    constant learning rate), standardised with the whole training set's
    statistics; ``trim`` > 0 trains each epoch after the first on the
    lowest-loss ``1 - trim`` share of each class of the core set; ``blur``
    > 1 trains and predicts on the standardised images' block means, as
    ``IncompatibilityClustering(weak_learner_pooling=blur)`` does."""

    def __init__(self, X_all, epochs, trim, seed, blur=1):
        Xf = to_float_channels_first(X_all)
        self.mean, self.std = standardization_stats(Xf)
        self.epochs, self.trim, self.seed, self.blur = epochs, trim, seed, blur

    def tensor(self, X):
        standardized = to_standardized_tensor(
            to_float_channels_first(X), self.mean, self.std, "cpu"
        )
        return block_mean(standardized, self.blur)

    def fit(self, X, y):
        X_t = self.tensor(X)
        self.classes, y = np.unique(y, return_inverse=True)
        y_t = torch.as_tensor(y, dtype=torch.long)
        black = tuple(float(v) for v in (-self.mean / self.std).reshape(-1))
        self.net = make_net(
            TWO_CLASS_NET,
            n_classes=2,
            input_shape=tuple(X_t.shape[1:]),
            device="cpu",
            random_state=self.seed,
            padding_fill=black,
        )
        if self.trim == 0:
            train_net(self.net, X_t, y_t, epochs=self.epochs)
            return self
        train_net(self.net, X_t, y_t, epochs=1)
        smoothed = np.zeros(len(y))
        for _ in range(self.epochs - 1):
            losses = per_sample_loss(predict_logits(self.net, X_t), y_t).numpy()
            smoothed = 0.5 * smoothed + 0.5 * losses
            rows = torch.as_tensor(lowest_per_class(smoothed, y, 1 - self.trim))
            train_net(self.net, X_t[rows], y_t[rows], epochs=1, warm_start=True)
        return self

    def predict(self, X):
        logits = predict_logits(self.net, self.tensor(X))
        return self.classes[logits.argmax(dim=1).numpy()]


def lowest_per_class(losses, labels, fraction):
    """Indices of the ``fraction`` lowest losses of each class."""
    keep = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        n_keep = max(1, int(round(fraction * len(rows))))
        keep.append(rows[np.argsort(losses[rows], kind="stable")[:n_keep]])
    return np.sort(np.concatenate(keep))


def contamination_record(poisoned, X_test, y_test, k, epochs, trim, size, seed, blur=1):
    """Train one weak learner on a core set holding ``k`` poisoned images;
    with ``blur`` > 1 it sees block means (:class:`WeakLearner`)."""
    rng = np.random.RandomState(seed)
    rows = core_set_rows(poisoned.is_poison, size, k, rng)
    learner = WeakLearner(poisoned.X, epochs, trim, seed, blur)
    started = time.perf_counter()
    learner.fit(poisoned.X[rows], poisoned.y[rows])
    seconds = time.perf_counter() - started
    unseen_poison = np.setdiff1d(poisoned.poison_indices, rows)
    trust = learner.predict(poisoned.X[unseen_poison]) == poisoned.target
    seen = None
    if k:
        seen = learner.predict(poisoned.X[rows[size:]]) == poisoned.target
    attacked = y_test == poisoned.source
    triggered = poisoned.trigger.apply(X_test[attacked])
    return {
        "k": int(k),
        "epochs": int(epochs),
        "trim": float(trim),
        "blur": int(blur),
        "schedule": "constant",
        "trust_seen_poison": None if seen is None else round(float(seen.mean()), 4),
        "core_size": int(len(rows)),
        "trust_unseen_poison": round(float(trust.mean()), 4),
        "clean_test_accuracy": round(
            float((learner.predict(X_test) == y_test).mean()), 4
        ),
        "test_tmr_targeted": round(
            float((learner.predict(triggered) == poisoned.target).mean()), 4
        ),
        "seconds": round(seconds, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario")
    parser.add_argument("--k", type=int, nargs="+", default=[0, 5, 15, 50])
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--trim", type=float, nargs="+", default=[0.0])
    parser.add_argument(
        "--blur",
        type=int,
        nargs="+",
        default=[1],
        help="train and predict on images averaged over blocks of this size",
    )
    parser.add_argument("--size", type=int, default=2400, help="clean images")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or zip")
    parser.add_argument("--out", required=True, help="JSON-lines file to append to")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X, y, X_test, y_test = load_cifar10(args.data)
    poisoned, _ = make_poisoned(args.scenario, X, y, args.seed)
    poisoned, X_test, y_test = two_class_split(poisoned, X_test, y_test)
    grid = itertools.product(args.blur, args.epochs, args.trim, args.k)
    for blur, epochs, trim, k in grid:
        record = contamination_record(
            poisoned, X_test, y_test, k, epochs, trim, args.size, args.seed, blur
        )
        record.update(
            scenario=args.scenario,
            net=TWO_CLASS_NET,
            threads=args.threads,
            cpu_model=cpu_model(),
            git_commit=STARTED_AT_COMMIT,
        )
        print(json.dumps(record), flush=True)
        with open(args.out, "a") as file:
            file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
