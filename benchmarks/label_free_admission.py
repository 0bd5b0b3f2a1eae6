"""Whether label-free features tell the poison from the hard clean digits.

Every admission rule of ISPL+B's self-training measured on the digits-robust
grid (docs/benchmarks.md) judges a sample by a network trained on labels,
poison included: a network that learned a sub-style of handwriting from a
few digits reads the rest of it by their label, and one that learned the
trigger from a few poisoned digits reads the rest of the poison by its
poisoned label, so every rule that keeps the one out keeps the other out
too. Features learned without labels (a small contrastive encoder, as in
DBD, Huang et al., ICLR 2022) see a poisoned digit as what it is, a digit
of its source class with three bright pixels. This script fits ISPL+B with
its defaults on digits-robust scenarios, trains such an encoder on the
scenario's training images (SimCLR: two random crops of each image, pulled
together against the rest of the batch), fits a logistic regression on
the encoded digits the vote kept (cross-fitted for those digits) and
records, for each inverse regularisation ``C``, the poison and clean digits
that its reading keeps, alone and together with ISPL+B's mask, and which
class it reads the poison as; the same for readings fitted on the digits
of each bag's first one or two core sets instead (ISPL finds them first,
and the poison collects in the last)::

    python benchmarks/label_free_admission.py --fraction 0.2 \\
        --out benchmarks/results/digits-label-free-admission.jsonl

One line per scenario; scenarios already in the file are skipped.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from environment import STARTED_AT_COMMIT, cpu_model
from grids import CORNER_TRIGGERS, DIGITS_ROBUST_PAIRS, CornerPatch
from run import append_record, load_dataset
from self_training_trace import fn_fp, poisoned_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from torch import nn

from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.incompatibility import in_core_sets

INVERSE_REGULARISATION = (0.01, 0.1, 1.0)
SIDE = 8
CROP_PADDING = 2
TEMPERATURE = 0.2
BATCH = 256


class Encoder(nn.Module):
    """Three 3x3 convolutions and a mean pool; the projection head is only
    for the contrastive loss."""

    def __init__(self, width=64, projection=32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width // 2, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection)
        )

    def features(self, x):
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.features(x))


def random_view(x, generator):
    """A random 8x8 crop of the zero-padded image, a random contrast and a
    little noise: what the encoder must see as the same digit."""
    n = len(x)
    padded = F.pad(x, (CROP_PADDING,) * 4)
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=generator)
    crops = torch.stack(
        [padded[k, :, i : i + SIDE, j : j + SIDE] for k, (i, j) in enumerate(offsets)]
    )
    contrast = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=generator)
    return crops * contrast + 0.1 * torch.randn(crops.shape, generator=generator)


def contrastive_loss(z, temperature=TEMPERATURE):
    """NT-Xent over a batch whose first and second halves are two views of
    the same images."""
    n = len(z) // 2
    z = F.normalize(z, dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(similarity, partner)


def label_free_features(X, epochs, seed):
    """Train an :class:`Encoder` on ``X`` (uint8 digits, one row each)
    without labels; return its standardised features of every image."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(X, dtype=torch.float32).reshape(-1, 1, SIDE, SIDE) / 255.0
    x = (x - x.mean()) / x.std()
    encoder = Encoder()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        # A last batch under half of BATCH is left out: too few negatives.
        for start in range(0, max(1, len(x) - BATCH // 2), BATCH):
            batch = x[order[start : start + BATCH]]
            views = torch.cat(
                [random_view(batch, generator), random_view(batch, generator)]
            )
            loss = contrastive_loss(encoder(views))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        features = encoder.features(x).numpy()
    return (features - features.mean(0)) / (features.std(0) + 1e-6)


def read_by(features, y, trusted, C):
    """Each sample's label as read by a logistic regression on the features
    of the ``trusted`` samples (e.g. those the vote kept): cross-fitted (up
    to 5 folds) for those, fitted on all of them for the rest."""
    model = LogisticRegression(C=C, max_iter=3000)
    kept = np.flatnonzero(trusted)
    read = np.empty_like(y)
    folds = max(2, min(5, int(np.bincount(y[kept]).min())))
    read[kept] = cross_val_predict(model, features[kept], y[kept], cv=folds)
    rest = np.flatnonzero(~trusted)
    if len(rest):
        read[rest] = model.fit(features[kept], y[kept]).predict(features[rest])
    return read


def first_core_sets(ispl, k):
    """The samples in the first ``k`` core sets ISPL found in each bag,
    where the poison collects least (docs/benchmarks.md)."""
    bags = ispl.component_bags_
    rank = np.arange(len(bags)) - np.searchsorted(bags, bags)
    return in_core_sets(ispl.components_, len(ispl.mask_))[rank < k].any(axis=0)


def scenario_record(X, y, is_poison, seed, epochs):
    """Fit ISPL+B, the encoder and the readings on one poisoned training set."""
    started = time.perf_counter()
    ispl = IncompatibilityClustering(random_state=seed, device="cpu").fit(X, y)
    ispl_seconds = time.perf_counter() - started
    features = label_free_features(X.reshape(len(y), -1), epochs, seed)
    encoder_seconds = time.perf_counter() - started - ispl_seconds
    readings = {}
    trusted_sets = {
        "vote": ispl.boosting_mask_,
        **{f"first {k} core sets": first_core_sets(ispl, k) for k in (1, 2)},
    }
    for fitted_on, trusted in trusted_sets.items():
        for C in INVERSE_REGULARISATION:
            read = read_by(features, y, trusted, C)
            agrees = read == y
            key = str(C) if fitted_on == "vote" else f"{fitted_on}, {C}"
            readings[key] = {
                "fitted_on": fitted_on,
                "n_fitted": int(trusted.sum()),
                "poisoned_fitted": int((trusted & is_poison).sum()),
                "alone_fn_fp": fn_fp(agrees, is_poison),
                "with_ispl_fn_fp": fn_fp(ispl.mask_ & agrees, is_poison),
                "poison_read_as": np.bincount(read[is_poison], minlength=10).tolist(),
            }
    return {
        "n_poisoned": int(is_poison.sum()),
        "vote_fn_fp": fn_fp(ispl.boosting_mask_, is_poison),
        "ispl_fn_fp": fn_fp(ispl.mask_, is_poison),
        "encoder_epochs": epochs,
        "readings": readings,
        "seconds": {"ispl": ispl_seconds, "encoder": encoder_seconds},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--pairs", nargs="*", help="source-to-target pairs to run, e.g. 0-to-7"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    done = set()
    try:
        with open(args.out) as results:
            done = {json.loads(line)["scenario"] for line in results}
    except FileNotFoundError:
        pass
    X, y, _, _ = load_dataset("digits")
    for source, target in DIGITS_ROBUST_PAIRS:
        if args.pairs and f"{source}-to-{target}" not in args.pairs:
            continue
        for corner in CORNER_TRIGGERS:
            scenario = CornerPatch(source, target, args.fraction, corner)
            if scenario.name in done:
                continue
            poisoned, is_poison = poisoned_digits(scenario, X, y, args.seed)
            record = scenario_record(
                np.asarray(poisoned.X),
                np.asarray(poisoned.y),
                is_poison,
                args.seed,
                args.epochs,
            )
            record = {
                "scenario": scenario.name,
                "seed": args.seed,
                **record,
                "cpu_model": cpu_model(),
                "git_commit": STARTED_AT_COMMIT,
            }
            append_record(args.out, record)
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
