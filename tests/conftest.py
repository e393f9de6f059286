"""Shared fixtures: a small synthetic dataset and the smoke configuration.

Every test is offline: downloads go to a real HTTP server on 127.0.0.1 serving
data the tests make, and models use `weights=None` or a local file.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow start-up lines in test output

import pytest  # noqa: E402

from flowerlib.config import Config  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A synthetic dataset (10 classes x 12 images, 64 px) shared by read-only tests.

    Tests that modify a dataset must copy it or make their own.
    """
    from flowerlib import synthetic

    root = tmp_path_factory.mktemp("synthetic")
    synthetic.make_dataset(root, num_classes=10, images_per_class=12, image_size=64, seed=0)
    return root


@pytest.fixture()
def smoke_config(tmp_path):
    """The smoke profile with its data directory in a fresh temporary folder."""
    return Config.for_profile("smoke", data_dir=tmp_path / "data")
