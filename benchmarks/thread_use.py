"""Fit time against torch's thread use, on an idle and on a busy CPU.

Networks without convolutions run on one torch thread inside the library
(:func:`sklearn_backdoor.training.cpu_threads_for`); convolutional networks
keep the caller's thread count. This script measures that choice against
the alternatives, on two workloads:

- ``digits-ispl``: a small ISPL+B fit (MLP) on the poisoned digits of the
  quickstart;
- ``cifar-cnn``: two epochs of the CPU preset ``fast_cpu`` on 2,048 random
  CIFAR-shaped images.

each with the library's policy (``policy``), with every fit on torch's
default threads (``all-threads``, the policy switched off) and on one
thread (``one-thread``), first on an idle machine and then while one
busy-looping process per core keeps every core busy (``--competitor
torch``: while a second torch job trains the CNN preset on all cores)::

    python benchmarks/thread_use.py --out benchmarks/results/thread_use-cpu.json

Stop other work on the machine first: the idle rows assume it is idle.
OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it, so a wait
policy is compared by running the script twice (the record names it)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/thread_use.py \\
        --out benchmarks/results/thread_use-cpu-passive.json
"""

import argparse
import contextlib
import datetime
import json
import multiprocessing
import os
import time
from pathlib import Path

import torch
from environment import STARTED_AT_COMMIT, cpu_model, library_versions
from sklearn.model_selection import train_test_split

import sklearn_backdoor.training as training
from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.datasets import load_digits_images
from sklearn_backdoor.poisoning import PatchTrigger, dirty_label_backdoor
from sklearn_backdoor.training import make_net, train_net

CORNER_TRIGGER = PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255)
SMALL_ISPL = {
    "n_bags": 1,
    "n_components": 4,
    "warmup_epochs": 2,
    "epochs_per_iteration": 1,
    "weak_learner_epochs": 5,
    "self_training_rounds": 2,
    "self_training_epochs": 2,
}


def digits_ispl():
    X, y = load_digits_images()
    X_train, _, y_train, _ = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    poisoned = dirty_label_backdoor(
        X_train,
        y_train,
        CORNER_TRIGGER,
        source=0,
        target=7,
        poison_fraction=0.2,
        random_state=0,
    )

    def fit():
        IncompatibilityClustering(random_state=0, **SMALL_ISPL).fit(
            poisoned.X, poisoned.y
        )

    return fit


def cifar_cnn():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(2048, 3, 32, 32, generator=generator)
    X = X.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (2048,), generator=generator)

    def fit():
        net = make_net(
            "fast_cpu",
            n_classes=2,
            input_shape=(3, 32, 32),
            device="cpu",
            random_state=0,
        )
        train_net(net, X, y, epochs=2)

    return fit


WORKLOADS = {"digits-ispl": digits_ispl, "cifar-cnn": cifar_cnn}


@contextlib.contextmanager
def thread_setting(setting, all_threads):
    """Apply a thread setting for a block and restore the defaults."""
    policy = training.cpu_threads_for
    if setting == "one-thread":
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(all_threads)
    if setting == "all-threads":
        training.cpu_threads_for = lambda net: contextlib.nullcontext()
    try:
        yield
    finally:
        training.cpu_threads_for = policy
        torch.set_num_threads(all_threads)


def _spin():
    while True:
        pass


def _train_forever():
    """Another torch job: the CNN preset training on all cores, forever."""
    fit = cifar_cnn()
    while True:
        fit()


@contextlib.contextmanager
def busy_cores(n, competitor="spin"):
    """Keep the cores busy for the block: ``n`` spinning processes, or
    (``competitor="torch"``) one process training the CNN preset on torch's
    default threads, as a second benchmark on the machine would."""
    # A forked child would inherit this process's OpenMP pool and hang in it:
    # the torch job starts afresh, and is given time to import torch.
    target, count, context, settle = (_spin, n, "fork", 0)
    if competitor == "torch":
        target, count, context, settle = (_train_forever, 1, "spawn", 10)
    start_method = multiprocessing.get_context(context)
    workers = [start_method.Process(target=target, daemon=True) for _ in range(count)]
    for worker in workers:
        worker.start()
    time.sleep(settle)
    try:
        yield
    finally:
        for worker in workers:
            worker.terminate()
            worker.join()


def seconds_of(fit, repeats):
    """The fastest of ``repeats`` timed calls, after one untimed call."""
    fit()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fit()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(workloads, settings, repeats, competitor="spin"):
    all_threads = torch.get_num_threads()
    rows = []
    for load in ("idle", "busy"):
        context = (
            busy_cores(os.cpu_count(), competitor)
            if load == "busy"
            else contextlib.nullcontext()
        )
        with context:
            for name in workloads:
                fit = WORKLOADS[name]()
                for setting in settings:
                    with thread_setting(setting, all_threads):
                        seconds = seconds_of(fit, repeats)
                    row = {"workload": name, "load": load, "setting": setting}
                    row["seconds"] = round(seconds, 2)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows, all_threads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    parser.add_argument(
        "--settings", nargs="+", default=["policy", "all-threads", "one-thread"]
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--competitor",
        choices=("spin", "torch"),
        default="spin",
        help="what keeps the cores busy: one spinning process per core, or "
        "a second torch job training the CNN preset",
    )
    args = parser.parse_args(argv)
    rows, all_threads = measure(
        args.workloads, args.settings, args.repeats, args.competitor
    )
    record = {
        "rows": rows,
        "torch_default_threads": all_threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "competitor": args.competitor,
        "small_ispl": SMALL_ISPL,
        "cpu_model": cpu_model(),
        "versions": library_versions(),
        "git_commit": STARTED_AT_COMMIT,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
