"""Train the CPU preset in fp32 and in bf16 on the same images: speed and accuracy.

The two-class tier's ISPL+B spends about three quarters of its fit training
weak learners (``docs/benchmarks.md``), all of it in fp32 on the CPU, where
the GPU trains under bf16 autocast. CPUs with AVX-512 BF16 or AMX run bf16
convolutions natively. This trains ``make_net(net)`` on the training images
of two CIFAR-10 classes (airplane and bird, as reference pair 0->2), once per
precision, from the same initialisation and batch order, and records the
training images per second and the clean test accuracy of each, so that a
faster precision is judged by what it learns as well as by the clock::

    python benchmarks/cpu_precision.py --data ../shared/data/cifar10-jpg.zip \\
        --out benchmarks/results/cpu_precision.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, device_name, library_versions

from sklearn_backdoor.datasets import load_cifar10
from sklearn_backdoor.inputs import (
    standardization_stats,
    to_float_channels_first,
    to_standardized_tensor,
)
from sklearn_backdoor.training import Stopwatch, make_net, predict_logits, train_net

CLASSES = (0, 2)


def two_classes(X, y, classes=CLASSES):
    """The images of ``classes``, labelled 0 and 1 in that order."""
    keep = np.isin(y, classes)
    return X[keep], (y[keep] == classes[1]).astype(np.int64)


def train_and_score(X_t, y_t, X_test_t, y_test, net_name, precision, epochs, seed):
    """Training images per second over ``epochs`` timed epochs (after one
    untimed), and the clean test accuracy after all of them."""
    net = make_net(
        net_name, n_classes=2, input_shape=(3, 32, 32), device="cpu", random_state=seed
    )
    net.set_params(precision=precision)
    train_net(net, X_t, y_t, epochs=1)
    with Stopwatch("cpu") as watch:
        train_net(net, X_t, y_t, epochs=epochs, warm_start=True)
    predicted = predict_logits(net, X_test_t).argmax(dim=1).numpy()
    return {
        "images_per_second": len(y_t) * epochs / watch.seconds,
        "seconds": watch.seconds,
        "clean_accuracy": float((predicted == y_test).mean()),
    }


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 (zip or folder)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--net", default="fast_cpu", help="preset name")
    parser.add_argument("--epochs", type=int, default=9, help="timed epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    X, y, X_test, y_test = load_cifar10(args.data)
    X, y = two_classes(X, y)
    X_test, y_test = two_classes(X_test, y_test)
    Xf = to_float_channels_first(X)
    mean, std = standardization_stats(Xf)
    X_t = to_standardized_tensor(Xf, mean, std, "cpu")
    X_test_t = to_standardized_tensor(to_float_channels_first(X_test), mean, std, "cpu")
    y_t = torch.as_tensor(y)
    runs = {
        precision: train_and_score(
            X_t, y_t, X_test_t, y_test, args.net, precision, args.epochs, args.seed
        )
        for precision in ("fp32", "bf16")
    }
    result = {
        "runs": runs,
        "speedup_bf16": runs["bf16"]["images_per_second"]
        / runs["fp32"]["images_per_second"],
        "net": args.net,
        "classes": list(CLASSES),
        "n_train": int(len(y)),
        "n_test": int(len(y_test)),
        "epochs_timed": args.epochs,
        "threads": args.threads,
        "device_name": device_name("cpu"),
        "cpu_has_avx512_bf16": _cpu_flag("avx512_bf16"),
        "cpu_has_amx_bf16": _cpu_flag("amx_bf16"),
        "versions": library_versions(),
        "git_commit": STARTED_AT_COMMIT,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for precision, run in runs.items():
        print(
            f"{precision}: {run['images_per_second']:,.0f} images/s, "
            f"clean accuracy {run['clean_accuracy']:.3f}"
        )


def _cpu_flag(name):
    """Whether /proc/cpuinfo lists ``name`` (None where it cannot be read)."""
    try:
        return name in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None


if __name__ == "__main__":
    main()
