import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from sklearn_backdoor import NetworkClassifier
from sklearn_backdoor.datasets import load_digits_images


def test_learns_digits_images_and_keeps_the_label_space():
    X, y = load_digits_images()
    names = np.array([f"digit{d}" for d in range(10)])[y]
    X_train, X_test, y_train, y_test = train_test_split(
        X, names, test_size=0.3, stratify=y, random_state=0
    )
    clf = NetworkClassifier(epochs=15, random_state=0, device="cpu")
    clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.9
    assert set(clf.predict(X_test[:50])) <= set(names)
    proba = clf.predict_proba(X_test[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_rejects_data_of_another_shape():
    X, y = load_digits_images()
    clf = NetworkClassifier(epochs=1, random_state=0, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="expecting 64 features"):
        clf.predict(np.zeros((2, 10)))
