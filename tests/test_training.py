import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skorch import NeuralNetClassifier
from skorch.dataset import Dataset

from sklearn_backdoor import (
    ActivationClusteringFilter,
    IncompatibilityClustering,
    ITLMFilter,
    NetworkClassifier,
    NoisyLabelMinimaxTrainer,
    SpectralSignatureFilter,
)
from sklearn_backdoor.augmentation import RandomCropFlip, flip_batch, translate_batch
from sklearn_backdoor.networks import MLP
from sklearn_backdoor.training import (
    CPU_CONV_INFERENCE_BATCH,
    DeviceBatchIterator,
    FastNeuralNetClassifier,
    default_augmentation,
    epoch_progress,
    inference_batch_size,
    initialize_net,
    make_net,
    predict_logits,
    resolve_device,
    train_augmentation,
    train_net,
)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 300),
    batch_size=st.integers(1, 64),
    shuffle=st.booleans(),
)
def test_iterator_visits_every_sample_once_without_drop_last(n, batch_size, shuffle):
    X = torch.arange(n)
    iterator = DeviceBatchIterator(
        Dataset(X, X), batch_size=batch_size, shuffle=shuffle, drop_last=False
    )
    batches = list(iterator)
    seen = torch.cat([xb for xb, _ in batches])
    assert len(batches) == len(iterator) == -(-n // batch_size)
    assert sorted(seen.tolist()) == list(range(n))
    assert all(torch.equal(xb, yb) for xb, yb in batches)


@pytest.mark.parametrize(
    ("n", "batch_size", "expected_batches"), [(10, 4, 2), (3, 4, 1), (8, 4, 2)]
)
def test_iterator_drop_last_keeps_full_batches_or_one_small(
    n, batch_size, expected_batches
):
    iterator = DeviceBatchIterator(
        Dataset(torch.arange(n), None), batch_size=batch_size, drop_last=True
    )
    batches = list(iterator)
    assert len(batches) == expected_batches
    assert batches[0][1] is None
    assert all(len(xb) == min(n, batch_size) for xb, _ in batches)


def test_translate_batch_is_a_shifted_window_of_the_zero_padded_image():
    x = torch.arange(1, 2 * 1 * 5 * 5 + 1, dtype=torch.float32).reshape(2, 1, 5, 5)
    generator = torch.Generator().manual_seed(0)
    out = translate_batch(x, 2, generator)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [
            padded[i, :, r : r + 5, c : c + 5] for r in range(5) for c in range(5)
        ]
        assert any(torch.equal(out[i], w) for w in windows)
    assert out.shape == x.shape


def test_flip_batch_mirrors_or_keeps_each_image_and_draws_both():
    x = torch.randn(64, 2, 3, 4)
    out = flip_batch(x, torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < 64


def test_random_crop_flip_without_padding_or_flip_is_identity():
    x = torch.randn(3, 3, 6, 6)
    assert torch.equal(RandomCropFlip(padding=0, flip=False)(x), x)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((3, 32, 32), RandomCropFlip(padding=4, flip=True)),
        ((1, 8, 8), RandomCropFlip(padding=1, flip=False)),
        ((64,), None),
    ],
)
def test_default_augmentation_scales_with_the_image(shape, expected):
    assert default_augmentation(shape) == expected


def _tiny_data(n=64, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, 4).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    return torch.from_numpy(X), torch.from_numpy(y)


def _fit_weights(random_state, epochs=3):
    X, y = _tiny_data()
    net = make_net(
        None, n_classes=2, input_shape=(4,), device="cpu", random_state=random_state
    )
    train_net(net, X, y, epochs=epochs)
    return torch.cat([p.detach().flatten() for p in net.module_.parameters()])


def test_training_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    first, second, other = _fit_weights(3), _fit_weights(3), _fit_weights(4)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), state)


def test_epoch_loss_is_recorded_once_per_epoch_and_decreases():
    X, y = _tiny_data(256)
    net = make_net(None, n_classes=2, input_shape=(4,), device="cpu", random_state=0)
    train_net(net, X, y, epochs=15)
    losses = net.history[:, "train_loss"]
    assert len(losses) == 15
    batches_per_epoch = 256 // net.batch_size
    assert all(len(epoch["batches"]) == batches_per_epoch for epoch in net.history)
    assert losses[-1] < 0.5 * losses[0]


def test_warm_start_continues_from_the_current_weights():
    X, y = _tiny_data()
    net = make_net(None, n_classes=2, input_shape=(4,), device="cpu", random_state=0)
    train_net(net, X, y, epochs=2)
    before = next(net.module_.parameters()).detach().clone()
    train_net(net, X, y, epochs=1, warm_start=True)
    assert len(net.history) == 3
    assert not torch.equal(before, next(net.module_.parameters()))


def test_predict_logits_matches_the_module_in_eval_mode():
    X, y = _tiny_data()
    net = make_net(None, n_classes=2, input_shape=(4,), device="cpu", random_state=0)
    train_net(net, X, y, epochs=2)
    logits = predict_logits(net, X, batch_size=7)
    net.module_.eval()
    with torch.no_grad():
        expected = net.module_(X)
    assert logits.shape == (64, 2)
    assert torch.allclose(logits, expected, atol=1e-5)


def test_a_conv_net_on_the_cpu_infers_in_small_batches_and_an_mlp_in_large():
    cnn = make_net(
        "fast_cpu", n_classes=2, input_shape=(3, 16, 16), device="cpu", random_state=0
    ).initialize()
    mlp = make_net(None, n_classes=2, input_shape=(4,), device="cpu", random_state=0)
    assert inference_batch_size(cnn) == CPU_CONV_INFERENCE_BATCH == 256
    assert inference_batch_size(mlp.initialize()) == 1024
    assert inference_batch_size(cnn, 50) == 50
    # The batch changes the outputs of a net in eval mode by rounding at most.
    X = torch.randn(600, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        predict_logits(cnn, X), predict_logits(cnn, X, batch_size=1024)
    )


def test_training_after_prediction_puts_every_submodule_back_in_train_mode():
    X = torch.randn(64, 1, 8, 8)
    y = torch.randint(0, 3, (64,))
    net = make_net(
        "fast", n_classes=3, input_shape=(1, 8, 8), device="cpu", random_state=0
    )
    net.set_params(batch_size=32)
    train_net(net, X, y, epochs=1)
    predict_logits(net, X)
    assert not any(m.training for m in net.module_.modules())
    norms = [m for m in net.module_.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.num_batches_tracked.item() for m in norms]
    train_net(net, X, y, epochs=1, warm_start=True)
    # Every BatchNorm saw the epoch's 2 batches in train mode.
    assert [
        m.num_batches_tracked.item() - b for m, b in zip(norms, before, strict=True)
    ] == [2] * len(norms)
    assert all(m.training for m in net.module_.modules())


def test_user_skorch_net_is_cloned_onto_the_device_and_trains():
    user_net = NeuralNetClassifier(
        MLP,
        module__n_features=4,
        module__n_classes=2,
        criterion=torch.nn.CrossEntropyLoss,
        train_split=None,
        max_epochs=1,
        verbose=0,
    )
    X, y = _tiny_data()
    net = make_net(
        user_net, n_classes=2, input_shape=(4,), device="cpu", random_state=1
    )
    assert net is not user_net
    train_net(net, X, y, epochs=2, random_state=1)
    assert len(net.history) == 2
    assert not hasattr(user_net, "module_")


@pytest.mark.parametrize(
    ("net", "error", "match"),
    [
        ("resnet50", ValueError, "net must be None, 'auto', one of"),
        (object(), TypeError, "net must be None, a preset name"),
    ],
)
def test_make_net_rejects_unknown_nets(net, error, match):
    with pytest.raises(error, match=match):
        make_net(net, n_classes=2, input_shape=(4,), device="cpu", random_state=0)


def test_resolve_device():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be 'auto' or a torch device"):
        resolve_device("gpu-please")


@pytest.mark.parametrize(
    ("device", "available"),
    [
        ("cuda", torch.cuda.is_available()),
        ("cuda:7", torch.cuda.device_count() > 7),
        ("mps", torch.backends.mps.is_available()),
        ("meta", False),
        ("xpu", False),
    ],
)
def test_resolve_device_refuses_devices_this_machine_lacks(device, available):
    if available:
        assert resolve_device(device) == device
        return
    with pytest.raises(ValueError, match=rf"device='{device}' cannot be used"):
        resolve_device(device)


def _flat_weights(net):
    return torch.cat([p.detach().flatten() for p in net.module_.parameters()])


def _user_net_weights(user_net, random_state, epochs=2):
    X, y = _tiny_data()
    net = make_net(
        user_net,
        n_classes=2,
        input_shape=(4,),
        device="cpu",
        random_state=random_state,
    )
    if epochs == 0:
        return _flat_weights(initialize_net(net))
    return _flat_weights(train_net(net, X, y, epochs=epochs))


@pytest.mark.parametrize("epochs", [0, 2])
def test_a_user_skorch_net_is_seeded_by_make_net_and_leaves_the_rngs_alone(
    epochs, user_skorch_net
):
    user_net = user_skorch_net(n_features=4)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = _user_net_weights(user_net, 3, epochs)
    assert torch.equal(first, _user_net_weights(user_net, 3, epochs))
    assert not torch.equal(first, _user_net_weights(user_net, 4, epochs))
    assert torch.equal(torch.get_rng_state(), state)


def test_a_user_skorch_net_trains_on_every_sample_it_is_given(user_skorch_net):
    X, y = _tiny_data()
    net = make_net(
        user_skorch_net(n_features=4),
        n_classes=2,
        input_shape=(4,),
        device="cpu",
        random_state=0,
    )
    train_net(net, X, y, epochs=1)
    assert net.train_split is None
    assert net.history[-1, "train_batch_count"] == -(-len(X) // 16)


def test_a_fast_net_without_random_state_leaves_the_global_rng_alone():
    X, y = _tiny_data()
    state = torch.get_rng_state()
    FastNeuralNetClassifier(
        MLP, module__n_features=4, module__n_classes=2, max_epochs=1, verbose=0
    ).fit(X, y)
    assert torch.equal(torch.get_rng_state(), state)


def test_precision_is_validated():
    X, y = _tiny_data()
    net = FastNeuralNetClassifier(
        MLP, module__n_features=4, module__n_classes=2, precision="fp8", verbose=0
    )
    with pytest.raises(ValueError, match="precision must be 'auto', 'bf16' or 'fp32'"):
        net.fit(X, y)


@pytest.mark.parametrize("fill", [(-1.5, 0.25, 2.0), 0.5])
def test_translate_batch_pads_with_the_fill_of_each_channel(fill):
    x = torch.zeros(16, 3, 4, 4)
    out = translate_batch(x, 4, torch.Generator().manual_seed(0), fill=fill)
    level = torch.as_tensor(fill).expand(3).reshape(1, 3, 1, 1)
    # Every pixel is either the image (0 here) or the channel's fill, and
    # some are fill (an offset of 4 on an 4x4 image leaves no image at all).
    is_fill = out == level
    assert torch.all(is_fill | (out == 0))
    assert is_fill.any()


def test_estimators_pad_crops_with_black_in_standardised_units():
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(40, 16, 16, 3)).astype(np.uint8)
    y = np.arange(40) % 2
    clf = NetworkClassifier("fast_cpu", epochs=1, random_state=0).fit(X, y)
    fill = train_augmentation(clf.net_).fill
    black = (0.0 - clf.input_mean_) / clf.input_std_
    np.testing.assert_allclose(fill, black.reshape(-1), rtol=1e-6)
    assert all(value < -1 for value in fill)


def _thread_count_seen_by(net, X, y):
    seen = []
    net.initialize()
    net.module_.register_forward_pre_hook(
        lambda module, inputs: seen.append(torch.get_num_threads())
    )
    train_net(net, X, y, epochs=1, warm_start=True)
    predict_logits(net, X)
    return set(seen)


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs 2 torch threads")
def test_networks_without_convolutions_train_and_predict_on_one_cpu_thread():
    X, y = _tiny_data()
    mlp = make_net(None, n_classes=2, input_shape=(4,), device="cpu", random_state=0)
    assert _thread_count_seen_by(mlp, X, y) == {1}
    images = torch.randn(8, 3, 16, 16)
    cnn = make_net(
        "fast_cpu", n_classes=2, input_shape=(3, 16, 16), device="cpu", random_state=0
    )
    threads = torch.get_num_threads()
    assert _thread_count_seen_by(cnn, images, y[:8]) == {threads}
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("epochs", [1, 4])
def test_train_net_progress_counts_the_epochs(epoch_bars, epochs):
    X, y = _tiny_data()
    net = make_net(None, n_classes=2, input_shape=(4,), device="cpu", random_state=0)
    train_net(net, X, y, epochs=epochs, progress="training")
    train_net(net, X, y, epochs=2, warm_start=True, progress="more")
    assert epoch_bars() == [("training", epochs, epochs, True), ("more", 2, 2, True)]
    assert len(net.history) == epochs + 2
    assert "epoch_progress" not in dict(net.callbacks_)


def test_train_net_without_progress_opens_no_bar(epoch_bars):
    X, y = _tiny_data()
    net = make_net(None, n_classes=2, input_shape=(4,), device="cpu", random_state=0)
    train_net(net, X, y, epochs=2)
    assert epoch_bars() == []


def test_epoch_progress_restores_the_callbacks_and_closes_on_error(epoch_bars):
    net = make_net(None, n_classes=2, input_shape=(4,), device="cpu", random_state=0)
    callbacks = initialize_net(net).callbacks_
    with pytest.raises(RuntimeError, match="stop"):
        with epoch_progress(net, 3, "training"):
            assert len(net.callbacks_) == len(callbacks) + 1
            raise RuntimeError("stop")
    assert net.callbacks_ is callbacks
    assert epoch_bars() == [("training", 3, 0, True)]


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        (SpectralSignatureFilter(epochs=3), [("training", 3)]),
        (ActivationClusteringFilter(epochs=2), [("training", 2)]),
        (
            ITLMFilter(n_rounds=2, first_round_epochs=3, round_epochs=2),
            [("round 1 training", 3), ("round 2 training", 2)],
        ),
        (NoisyLabelMinimaxTrainer(epochs=2, tau=0.0), [("minimax epochs", 2)]),
        (
            IncompatibilityClustering(
                n_components=2,
                n_bags=1,
                warmup_epochs=1,
                epochs_per_iteration=1,
                weak_learner_epochs=3,
                self_training=False,
            ),
            [("weak learner 1", 3), ("weak learner 2", 3)],
        ),
    ],
    ids=lambda value: type(value).__name__,
)
@pytest.mark.parametrize("verbose", [0, 1])
def test_verbose_estimators_show_a_bar_over_each_networks_epochs(
    epoch_bars, estimator, expected, verbose
):
    X, y = _tiny_data(128)
    estimator.set_params(random_state=0, device="cpu", verbose=verbose)
    estimator.fit(X.numpy(), y.numpy())
    shown = [(title, total, total, True) for title, total in expected]
    assert epoch_bars() == (shown if verbose else [])
