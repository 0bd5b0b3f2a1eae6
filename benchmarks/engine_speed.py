"""Time one training epoch: a reference-style loop against the fast engine.

The reference loop is what the papers' code does: a ``torch.utils.data``
``DataLoader`` over uint8 CPU images with per-sample torchvision transforms
(``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``,
``Normalize``), batch 128, SGD on a PreActResNet18 of
``sklearn_backdoor.networks``, fp32. The engine is ``make_net`` + ``train_net``
on tensors already on the device (batch-level augmentation, bf16 autocast on
CUDA), for the same PreActResNet18 preset and for the ``fast`` network.

Each loop first runs ``--warmup-epochs`` untimed epochs (CUDA kernels, cuDNN
autotuning, worker start-up), then ``--epochs`` timed ones; the JSON file
records the seconds per epoch and the ratio reference / engine::

    python benchmarks/engine_speed.py --out benchmarks/results/engine_speed.json
    OMP_NUM_THREADS=1 python benchmarks/engine_speed.py --n 512 --device cpu \\
        --out /tmp/engine_speed.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, device_name, library_versions
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from sklearn_backdoor.datasets import load_cifar10
from sklearn_backdoor.inputs import (
    standardization_stats,
    to_float_channels_first,
    to_standardized_tensor,
)
from sklearn_backdoor.networks import PreActResNet18
from sklearn_backdoor.training import Stopwatch, make_net, resolve_device, train_net

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class UInt8ImageDataset(Dataset):
    """(height, width, channel) uint8 images with a per-sample transform."""

    def __init__(self, images, labels, transform):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(self.images[index]), int(self.labels[index])


def reference_transform():
    return transforms.Compose(
        [
            transforms.ToPILImage(),
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )


def reference_epoch(model, loader, optimizer, device):
    model.train()
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()


def time_reference(X, y, device, epochs, warmup_epochs, workers, seed):
    """Seconds per timed epoch of the reference-style loop."""
    torch.manual_seed(seed)
    model = PreActResNet18(n_classes=10).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4
    )
    loader = DataLoader(
        UInt8ImageDataset(X, y, reference_transform()),
        batch_size=128,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        persistent_workers=workers > 0,
    )
    for _ in range(warmup_epochs):
        reference_epoch(model, loader, optimizer, device)
    with Stopwatch(device) as watch:
        for _ in range(epochs):
            reference_epoch(model, loader, optimizer, device)
    return watch.seconds / epochs


def time_engine(X, y, device, epochs, warmup_epochs, net_name, seed):
    """Seconds per timed epoch of ``make_net`` + ``train_net`` on device tensors."""
    Xf = to_float_channels_first(X)
    mean, std = standardization_stats(Xf)
    X_t = to_standardized_tensor(Xf, mean, std, device)
    y_t = torch.as_tensor(y, dtype=torch.long, device=device)
    net = make_net(
        net_name,
        n_classes=10,
        input_shape=(3, 32, 32),
        device=device,
        random_state=seed,
    )
    # The warm-up also initialises the net; later calls continue from it.
    train_net(net, X_t, y_t, epochs=max(1, warmup_epochs))
    with Stopwatch(device) as watch:
        train_net(net, X_t, y_t, epochs=epochs, warm_start=True)
    return watch.seconds / epochs


def load_images(data, n, seed):
    """``n`` CIFAR-10 training images, or random uint8 images without ``data``."""
    if data is not None:
        X, y, _, _ = load_cifar10(data)
    else:
        rng = np.random.RandomState(seed)
        X = rng.randint(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        y = rng.randint(0, 10, size=n)
    return X[:n], y[:n]


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--data", default=None, help="CIFAR-10 (else random images)")
    parser.add_argument("--n", type=int, default=50_000, help="training images")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=4, help="DataLoader workers of the reference"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    device = resolve_device(args.device)
    if device == "cpu":
        torch.set_num_threads(1)
    X, y = load_images(args.data, args.n, args.seed)
    common = (X, y, device, args.epochs, args.warmup_epochs)
    seconds = {
        "reference_preact_resnet18": time_reference(*common, args.workers, args.seed),
        "engine_preact_resnet18": time_engine(*common, "preact_resnet18", args.seed),
        "engine_fast": time_engine(*common, "fast", args.seed),
    }
    reference = seconds["reference_preact_resnet18"]
    result = {
        "seconds_per_epoch": seconds,
        "images_per_second": {k: len(y) / v for k, v in seconds.items()},
        "speedup_vs_reference": {
            k: reference / v for k, v in seconds.items() if k.startswith("engine")
        },
        "n_images": int(len(y)),
        "data": args.data or "random uint8 images",
        "epochs_timed": args.epochs,
        "warmup_epochs": args.warmup_epochs,
        "reference_workers": args.workers,
        "device": device,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
        "git_commit": STARTED_AT_COMMIT,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, value in seconds.items():
        print(f"{name:<28}{value:>9.2f} s/epoch")
    for name, value in result["speedup_vs_reference"].items():
        print(f"speed-up {name}: {value:.2f}x")


if __name__ == "__main__":
    main()
