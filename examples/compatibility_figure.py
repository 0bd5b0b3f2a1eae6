"""Redraw Fig. 2 of Jin, Sun & Rinard: poisoned data is incompatible with clean data
==================================================================================

Fig. 2 of *Incompatibility Clustering as a Defense Against Backdoor
Poisoning Attacks* (Jin, Sun & Rinard, ICLR 2023), for one scenario: ``C``
is a random eighth of each class of the clean training set and ``P`` the
poisoned versions of the other images of the poisoned class (DLBD: the
source class, triggered and relabelled; CLBD: the target class, perturbed
and stamped with the four-corner trigger, labels kept). For each ratio
``|P'| / |C_source|`` a random ``P'`` of ``P`` is drawn, a network is
trained on a random half (per class) of ``C | P'``
(``sklearn_backdoor.compatibility.self_expansion_error``), and its accuracy
is read on ``C``, on ``C``'s source and non-source classes, and on ``P``.
Each point is the mean over the draws of ``P'`` for one draw of ``C``, minus
the same quantity at ratio 0; the line joins the medians. The paper uses 5
draws of each (the defaults here).

The default runs on the scikit-learn digits on a CPU (about a minute; the
8x8 digits are a toy: the four 3x3 patches of CLBD cover half of each
image)::

    python examples/compatibility_figure.py
    python examples/compatibility_figure.py --attack clbd --n-clean 2 --n-poison 2

On CIFAR-10 (a batches folder, an image folder or a zip; a GPU is strongly
recommended) scenario 0 of the authors' generator is airplane -> bird::

    python examples/compatibility_figure.py --data cifar10-jpg.zip --scenario 0

``--two-class`` keeps only the scenario's source and target classes (the
two-class CPU tier's data: minutes on two CPU cores with ``--net fast_cpu``)::

    python examples/compatibility_figure.py --data cifar10-jpg.zip --scenario 0 \\
        --two-class --net fast_cpu --n-clean 3 --n-poison 3 --ratios 0.5,1

Needs matplotlib (``pip install matplotlib``, or the ``benchmarks`` extra).
"""

import argparse
import sys
import time

import numpy as np

from sklearn_backdoor.clean_label import clean_label_backdoor
from sklearn_backdoor.compatibility import sample_per_class, self_expansion_error
from sklearn_backdoor.datasets import load_cifar10, load_digits_images
from sklearn_backdoor.poisoning import PatchTrigger, reference_scenarios

DIGITS_SOURCE, DIGITS_TARGET = 0, 7
DIGITS_TRIGGER = PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255)
PANELS = (
    ("clean", "clean data C"),
    ("source", "source class of C"),
    ("non_source", "non-source classes of C"),
    ("poison", "poisoned data P"),
)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=None, help="CIFAR-10 folder or zip (default: digits)"
    )
    parser.add_argument("--attack", default="dlbd", choices=("dlbd", "clbd"))
    parser.add_argument(
        "--scenario", type=int, default=0, help="CIFAR-10 pair index 0-7 (seed 100)"
    )
    parser.add_argument(
        "--two-class",
        action="store_true",
        help="CIFAR-10: only the scenario's source and target classes",
    )
    parser.add_argument("--norm", default="linf", choices=("linf", "l2"))
    parser.add_argument(
        "--ratios", default="0,0.25,0.5,0.75,1", help="comma-separated |P'|/|C_src|"
    )
    parser.add_argument("--n-clean", type=int, default=5, help="draws of C")
    parser.add_argument("--n-poison", type=int, default=5, help="draws of P'")
    parser.add_argument("--clean-fraction", type=float, default=1 / 8)
    parser.add_argument("--expansion", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--net", default=None, help="preset name (default: auto)")
    parser.add_argument("--output", default="compatibility_figure.png")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.two_class and args.data is None:
        parser.error("--two-class restricts CIFAR-10: it needs --data")
    return args


def import_pyplot():
    """matplotlib's pyplot on the file-only backend, or exit with a hint."""
    try:
        import matplotlib
    except ImportError:
        sys.exit(
            "compatibility_figure.py draws with matplotlib, which is not "
            "installed: pip install matplotlib (or the 'benchmarks' extra)."
        )
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_scenario(args):
    """Clean data, the poisoned version of every row, and the source class."""
    if args.data is None:
        X, y = load_digits_images()
        source, target, trigger = DIGITS_SOURCE, DIGITS_TARGET, DIGITS_TRIGGER
        name = f"digits {source}->{target}"
    else:
        X, y, _, _ = load_cifar10(args.data)
        scenario = reference_scenarios(100, poison_fractions=(0.1,))[args.scenario]
        source, target, trigger = scenario.source, scenario.target, scenario.trigger()
        name = f"CIFAR-10 {source}->{target}"
        if args.two_class:
            pair = np.isin(y, [source, target])
            X, y = X[pair], y[pair]
            name += ", two classes"
    if args.attack == "dlbd":
        X_poison = trigger.apply(X)
        y_poison = np.full_like(y, target)
        return X, y, X_poison, y_poison, source, f"DLBD, {name}"
    poisoned = clean_label_backdoor(
        X,
        y,
        target=source,
        poison_fraction=1.0,
        norm=args.norm,
        net=args.net,
        reference_epochs=args.epochs,
        device=args.device,
        random_state=args.random_state,
    )
    return X, y, poisoned.X, poisoned.y, source, f"CLBD ({args.norm}), class {source}"


def accuracies(X, y, X_poison, y_poison, source, ratios, args, rng):
    """Accuracies of shape (n_clean, n_ratios, 4): one row per draw of C."""
    table = np.zeros((args.n_clean, len(ratios), len(PANELS)))
    for draw in range(args.n_clean):
        clean = sample_per_class(np.arange(len(y)), y, args.clean_fraction, rng)
        pool = np.setdiff1d(np.flatnonzero(y == source), clean)
        X_all = np.concatenate([X[clean], X_poison[pool]])
        y_all = np.concatenate([y[clean], y_poison[pool]])
        in_clean = np.arange(len(clean))
        in_pool = len(clean) + np.arange(len(pool))
        groups = {
            "source": in_clean[y[clean] == source],
            "non_source": in_clean[y[clean] != source],
            "poison": in_pool,
        }
        for column, ratio in enumerate(ratios):
            size = min(round(ratio * len(groups["source"])), len(pool))
            results = [
                self_expansion_error(
                    X_all,
                    y_all,
                    in_clean,
                    given=rng.choice(in_pool, size=size, replace=False),
                    groups=groups,
                    expansion=args.expansion,
                    net=args.net,
                    epochs=args.epochs,
                    device=args.device,
                    random_state=rng,
                )
                for _ in range(args.n_poison)
            ]
            errors = [
                [r.error, *(r.group_errors[key] for key, _ in PANELS[1:])]
                for r in results
            ]
            table[draw, column] = 1 - np.mean(errors, axis=0)
        print(f"draw {draw + 1}/{args.n_clean} of C done", flush=True)
    return table


def draw_figure(plt, ratios, changes, title, output):
    figure, axes = plt.subplots(len(PANELS), 1, figsize=(4, 9), sharex=True)
    for panel, (axis, (_, label)) in enumerate(zip(axes, PANELS, strict=True)):
        points = 100 * changes[:, :, panel]
        for column, ratio in enumerate(ratios):
            axis.scatter(
                np.full(len(points), ratio), points[:, column], s=12, color="tab:blue"
            )
        axis.plot(ratios, np.median(points, axis=0), color="black")
        axis.axhline(0, color="grey", linewidth=0.5)
        axis.set_ylabel("change in\naccuracy (%)")
        axis.set_title(label, fontsize=10)
    axes[-1].set_xlabel("poison / clean ratio in the source class")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(output, dpi=150)


def main():
    args = parse_arguments()
    plt = import_pyplot()
    ratios = sorted({0.0, *(float(r) for r in args.ratios.split(","))})
    rng = np.random.RandomState(args.random_state)
    started = time.perf_counter()
    X, y, X_poison, y_poison, source, title = load_scenario(args)
    table = accuracies(X, y, X_poison, y_poison, source, ratios, args, rng)
    changes = table - table[:, :1]
    print(f"{title}: median change in accuracy (%) against ratio 0")
    print("ratio  " + "  ".join(f"{key:>10}" for key, _ in PANELS))
    for column, ratio in enumerate(ratios):
        medians = 100 * np.median(changes[:, column], axis=0)
        print(f"{ratio:5.2f}  " + "  ".join(f"{m:10.1f}" for m in medians))
    draw_figure(plt, ratios, changes, title, args.output)
    print(f"wrote {args.output} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
