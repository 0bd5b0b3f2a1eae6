"""Engine behaviour that only exists on CUDA; skipped without a GPU."""

import warnings

import pytest
import torch

from sklearn_backdoor.training import make_net, predict_logits, side_stream, train_net

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _cifar_like(n=1024):
    generator = torch.Generator(device="cuda").manual_seed(0)
    X = torch.randn(n, 3, 32, 32, device="cuda", generator=generator)
    y = torch.randint(0, 10, (n,), device="cuda", generator=generator)
    return X.contiguous(memory_format=torch.channels_last), y


def test_fast_net_trains_in_bf16_and_returns_fp32_logits_on_the_device():
    X, y = _cifar_like()
    net = make_net(
        "fast", n_classes=10, input_shape=(3, 32, 32), device="cuda", random_state=0
    )
    train_net(net, X, y, epochs=2)
    logits = predict_logits(net, X)
    assert logits.dtype == torch.float32 and logits.device.type == "cuda"
    assert net._uses_autocast()


def test_training_synchronises_with_the_host_about_once_per_epoch():
    X, y = _cifar_like()
    net = make_net(
        "fast", n_classes=10, input_shape=(3, 32, 32), device="cuda", random_state=0
    )
    train_net(net, X, y, epochs=1)
    epochs = 4
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_net(net, X, y, epochs=epochs, warm_start=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 2 * epochs


def test_work_on_a_side_stream_is_finished_and_ordered_after_the_caller():
    X, _ = _cifar_like(4096)
    produced = X * 2  # queued on the default stream
    with side_stream("cuda"):
        assert torch.cuda.current_stream() != torch.cuda.default_stream()
        total = (produced.float() ** 2).sum()
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    torch.testing.assert_close(total, (4 * X.float() ** 2).sum())


def test_parallel_bags_on_cuda_streams_vote_as_sequential_ones():
    import numpy as np

    from sklearn_backdoor import IncompatibilityClustering

    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 1200)
    # Class c is brightest in channel c. Four epochs on a core set of a few
    # hundred images are only a handful of steps, so the learners are weak:
    # on an H200 (2026-12-04) 55% of their votes were right, against a third
    # by chance.
    X = rng.randint(0, 128, (1200, 32, 32, 3))
    X[np.arange(1200), :, :, y] += 127
    X = X.astype(np.uint8)
    params = dict(
        net="fast",
        n_components=2,
        n_bags=3,
        warmup_epochs=1,
        epochs_per_iteration=1,
        weak_learner_epochs=4,
        self_training=False,
        random_state=0,
        device="cuda",
    )
    sequential = IncompatibilityClustering(n_jobs=1, **params).fit(X, y)
    parallel = IncompatibilityClustering(n_jobs=3, **params).fit(X, y)
    # Kernels may differ in the last bits between runs, so the votes are
    # compared, not the weights.
    assert len(sequential.components_) == len(parallel.components_) == 6
    assert (sequential.votes_ == parallel.votes_).mean() > 0.95
    # Learners that learned something, so that the agreement above is not
    # that of constant outputs.
    assert (parallel.votes_ == y).mean() > 0.45


def test_the_cluster_vote_clusters_cuda_features_as_it_clusters_arrays():
    """flag_poison_clusters reduces and scores a CUDA tensor on the GPU
    (sklearn_backdoor.device_clustering): the same samples are flagged."""
    import numpy as np

    from sklearn_backdoor.cluster_vote import flag_poison_clusters

    rng = np.random.RandomState(0)
    clean = rng.normal(size=(4000, 64))
    poison = rng.normal(loc=8.0, scale=0.1, size=(300, 64))
    X = np.vstack([clean, poison])
    labels = np.r_[np.zeros(2000), np.ones(2300)].astype(int)
    flagged, cohesion = flag_poison_clusters(X, labels, 0)
    on_gpu, gpu_cohesion = flag_poison_clusters(
        torch.as_tensor(X, device="cuda"), labels, 0
    )
    np.testing.assert_array_equal(on_gpu, flagged)
    assert flagged[-300:].all() and flagged.sum() == 300
    assert gpu_cohesion == pytest.approx(cohesion, abs=1e-6)
