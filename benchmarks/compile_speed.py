"""Does ``torch.compile`` speed up the CPU preset's training step?

Trains ``fast_cpu`` (FastCNN, widths 16/64/64, channels-last) on 2,048
random CIFAR-shaped images, batch 128, SGD, one epoch at a time, eager and
compiled (inductor) in turn on the same process and thread count, so that
load from other processes falls on both alike. Records the first compiled
epoch (tracing and code generation), the images a second of each variant
in every repeat, and the first epoch of a second compiled instance (whether
new weak learners, new module instances of the same class, compile again)::

    python benchmarks/compile_speed.py --threads 1 \\
        --out benchmarks/results/compile_speed-cpu.json
"""

import argparse
import datetime
import json
import time

import torch
import torch.nn.functional as F
from environment import STARTED_AT_COMMIT, cpu_model, library_versions

from sklearn_backdoor.networks import build_network

N_IMAGES = 2048
BATCH = 128


def new_network():
    """A fresh ``fast_cpu`` network in channels-last memory and its optimiser."""
    network = build_network("fast_cpu", n_classes=2, input_shape=(3, 32, 32))
    network = network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        network.parameters(), lr=0.05, momentum=0.9, nesterov=True
    )
    return network, optimizer


def epoch_seconds(network, optimizer, X, y):
    """Seconds for one training epoch of ``network`` on ``X, y``."""
    started = time.perf_counter()
    for start in range(0, len(X), BATCH):
        optimizer.zero_grad(set_to_none=True)
        batch = slice(start, start + BATCH)
        loss = F.cross_entropy(network(X[batch]), y[batch])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    X = torch.randn(N_IMAGES, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (N_IMAGES,))
    eager, optimizer = new_network()
    epoch_seconds(eager, optimizer, X, y)
    compiled = torch.compile(eager)
    first_compiled = epoch_seconds(compiled, optimizer, X, y)
    rows = []
    for _ in range(args.repeats):
        eager_s = epoch_seconds(eager, optimizer, X, y)
        compiled_s = epoch_seconds(compiled, optimizer, X, y)
        rows.append(
            {
                "eager_images_per_s": round(N_IMAGES / eager_s),
                "compiled_images_per_s": round(N_IMAGES / compiled_s),
            }
        )
        print(rows[-1], flush=True)
    second, second_optimizer = new_network()
    second_first = epoch_seconds(torch.compile(second), second_optimizer, X, y)
    record = {
        "benchmark": "compile_speed",
        "threads": args.threads,
        "first_compiled_epoch_s": round(first_compiled, 1),
        "second_instance_first_epoch_s": round(second_first, 1),
        "repeats": rows,
        "commit": STARTED_AT_COMMIT,
        "cpu_model": cpu_model(),
        "versions": library_versions(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    with open(args.out, "w") as out:
        json.dump(record, out, indent=1)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
