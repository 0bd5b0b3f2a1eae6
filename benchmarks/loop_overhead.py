"""Time what skorch adds per batch: the engine against a bare PyTorch loop.

Both loops train the same module with the same optimiser, augmentation,
batch size and precision on the same device-resident data; the bare loop is
the least a training step can do (index, augment, forward, loss, backward,
step, loss summed on the device and read once per epoch). The difference is
the Python cost of skorch's machinery (callbacks, history, ``train_step``),
which matters where a GPU step takes about as long as launching it: small
networks on small batches, as in ISPL's core sets::

    OMP_NUM_THREADS=1 python benchmarks/loop_overhead.py --net mlp \\
        --input-shape 1 8 8 --batch-size 8 --device cpu --out /tmp/overhead.json
    python benchmarks/loop_overhead.py --net fast --batch-size 512 \\
        --out benchmarks/results/loop_overhead.json
"""

import argparse
import json
from pathlib import Path

import torch
from environment import STARTED_AT_COMMIT, device_name, library_versions

from sklearn_backdoor.training import (
    Stopwatch,
    make_net,
    resolve_device,
    train_augmentation,
    train_net,
)


def random_data(n, input_shape, n_classes, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, *input_shape, generator=generator).to(device)
    y = torch.randint(0, n_classes, (n,), generator=generator).to(device)
    return X, y


def bare_epoch(net, X, y, batch_size, generator):
    """One epoch of the least a training loop can do, with one host sync."""
    module, optimizer, criterion = net.module_, net.optimizer_, net.criterion_
    augmentation = train_augmentation(net)
    module.train()
    order = torch.randperm(len(X), device=X.device, generator=generator)
    loss_sum = torch.zeros((), device=X.device)
    for start in range(0, len(X) - batch_size + 1, batch_size):
        index = order[start : start + batch_size]
        Xb, yb = X[index], y[index]
        if augmentation is not None:
            Xb = augmentation(Xb, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            device_type=X.device.type,
            dtype=torch.bfloat16,
            enabled=net._uses_autocast(),
        ):
            logits = module(Xb)
        loss = criterion(logits.float(), yb)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
    return loss_sum.item()


def seconds_per_batch(function, n_batches, device):
    with Stopwatch(device) as watch:
        function()
    return watch.seconds / n_batches


def measure(args):
    device = resolve_device(args.device)
    X, y = random_data(args.n, args.input_shape, args.n_classes, device)
    net = make_net(
        args.net,
        n_classes=args.n_classes,
        input_shape=tuple(args.input_shape),
        device=device,
        random_state=0,
    )
    net.set_params(batch_size=args.batch_size)
    train_net(net, X, y, epochs=args.warmup_epochs)
    generator = torch.Generator(device=device).manual_seed(1)
    for _ in range(args.warmup_epochs):
        bare_epoch(net, X, y, args.batch_size, generator)

    def engine():
        train_net(net, X, y, epochs=args.epochs, warm_start=True)

    def bare():
        for _ in range(args.epochs):
            bare_epoch(net, X, y, args.batch_size, generator)

    # Alternate the two and keep each one's fastest repeat: the least
    # disturbed by whatever else the machine is doing.
    n_batches = args.epochs * (args.n // args.batch_size)
    timings = {"engine": [], "bare": []}
    for _ in range(args.repeats):
        timings["engine"].append(seconds_per_batch(engine, n_batches, device))
        timings["bare"].append(seconds_per_batch(bare, n_batches, device))
    engine_best, loop_best = min(timings["engine"]), min(timings["bare"])
    return {
        "net": args.net,
        "input_shape": list(args.input_shape),
        "batch_size": args.batch_size,
        "n": args.n,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "engine_ms_per_batch": engine_best * 1e3,
        "bare_loop_ms_per_batch": loop_best * 1e3,
        "skorch_overhead_ms_per_batch": (engine_best - loop_best) * 1e3,
        "engine_ms_per_batch_all": [t * 1e3 for t in timings["engine"]],
        "bare_loop_ms_per_batch_all": [t * 1e3 for t in timings["bare"]],
        "device": device,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
        "git_commit": STARTED_AT_COMMIT,
    }


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--net", default="fast", help="preset name")
    parser.add_argument("--input-shape", type=int, nargs="+", default=[3, 32, 32])
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--n", type=int, default=6144, help="training samples")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    result = measure(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
