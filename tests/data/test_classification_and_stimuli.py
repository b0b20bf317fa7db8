"""Tests of neuroreg_tf.data: offline datasets, augmentation, stimuli."""

import gzip
import pathlib
import random
import socket

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import cifar

from neuroreg_tf import data
from neuroreg_tf import determinism
from neuroreg_tf.data import classification
from neuroreg_tf.data import common
from neuroreg_tf.data import fashion_mnist
from neuroreg_tf.data import prepare as prepare_cli

pytestmark = pytest.mark.filterwarnings("ignore")


def _require_debian_fashion_mnist():
    if fashion_mnist.missing_source_files():
        pytest.skip(f"Fashion-MNIST files absent: {common.FASHION_MNIST_INSTALL_COMMAND}")


def _refuse_network(patch):
    """Makes every socket connection fail the test (``patch``: a pytest MonkeyPatch)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "create_connection", refuse)


def _files_and_mtimes(folder):
    return {str(path): path.stat().st_mtime_ns for path in sorted(pathlib.Path(folder).rglob("*"))}


def _seeded_load(data_dir):
    """Seeds as train.py does, loads 300 training examples, then draws what a model build draws.

    Returns the examples and the draws: a Keras initializer's kernel (its seed comes from
    Python's ``random``), and one number each from Python, NumPy and TensorFlow.
    """
    keras.utils.set_random_seed(3)
    images, labels = data.split_arrays("fashion_mnist", "train", data_dir=data_dir, limit=300)
    layer = keras.layers.Dense(4)
    layer.build((None, 3))
    draws = {
        "kernel": layer.kernel.numpy(),
        "python": random.random(),
        "numpy": np.random.random(),
        "tensorflow": tf.random.uniform([2]).numpy(),
    }
    return images, labels, draws


@pytest.fixture(scope="module")
def fmnist_first_load(tmp_path_factory):
    """A data dir where a seeded load prepared fashion_mnist, all sockets refused.

    Returns (data_dir, what ``_seeded_load`` gave on that preparing load).
    """
    _require_debian_fashion_mnist()
    data_dir = tmp_path_factory.mktemp("tfds")

    with pytest.MonkeyPatch.context() as patch:
        _refuse_network(patch)
        assert not fashion_mnist.is_prepared(data_dir)
        first_load = _seeded_load(data_dir)
        assert fashion_mnist.is_prepared(data_dir)
        prepared = _files_and_mtimes(data_dir)
        data.prepare_fashion_mnist(data_dir)  # Already prepared: must touch nothing.
        assert _files_and_mtimes(data_dir) == prepared
    return data_dir, first_load


@pytest.fixture(scope="module")
def fmnist_dir(fmnist_first_load):
    """A data dir where loading fashion_mnist prepared it (see ``fmnist_first_load``)."""
    return fmnist_first_load[0]


def test_the_preparing_load_gives_what_every_later_load_gives(fmnist_first_load):
    # A first run prepares the dataset; it must train exactly what every later run trains:
    # the same examples in the same order, and the same seeded draws after loading them.
    data_dir, (first_images, first_labels, first_draws) = fmnist_first_load
    classification._split_in_memory.cache_clear()  # Read the prepared files from disk again.
    images, labels, draws = _seeded_load(data_dir)
    np.testing.assert_array_equal(images, first_images)
    np.testing.assert_array_equal(labels, first_labels)
    assert first_draws.keys() == draws.keys()
    for name, value in draws.items():
        np.testing.assert_array_equal(value, first_draws[name], err_msg=name)


def test_preserved_global_random_state_restores_python_and_numpy():
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.random())
    random.seed(5)
    np.random.seed(5)
    with pytest.raises(RuntimeError), determinism.preserved_global_random_state():
        random.random(), np.random.random()
        raise RuntimeError("restored even when the block fails")
    assert (random.random(), np.random.random()) == expected


def _batches(data_dir, **kwargs):
    kwargs = {"batch_size": 16, "limit": 64, "data_dir": data_dir, **kwargs}
    return [(x.numpy(), y.numpy())
            for x, y in data.load_classification("fashion_mnist", "train", **kwargs)]


def test_stock_tfds_load_works_offline_after_preparation(fmnist_dir):
    builder = tfds.builder("fashion_mnist", data_dir=str(fmnist_dir))
    assert builder.is_prepared()
    assert (fmnist_dir / "fashion_mnist" / "3.0.1" / "dataset_info.json").is_file()
    assert builder.info.splits["train"].num_examples == 60000
    assert builder.info.splits["test"].num_examples == 10000
    example = next(iter(tfds.load(
        "fashion_mnist", split="test", data_dir=str(fmnist_dir), download=False)))
    assert example["image"].shape == (28, 28, 1)


def _read_idx(path, header_bytes):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read()[header_bytes:], np.uint8)


def test_fashion_mnist_pixels_and_labels_match_the_idx_files(fmnist_dir):
    source = pathlib.Path(common.FASHION_MNIST_SOURCE_DIR)
    raw_images = _read_idx(source / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28 * 28)
    raw_labels = _read_idx(source / "t10k-labels-idx1-ubyte.gz", 8)
    dataset = data.load_classification(
        "fashion_mnist", "test", batch_size=10000, data_dir=fmnist_dir)
    images, labels = next(iter(dataset))
    loaded = np.round(images.numpy().reshape(-1, 28 * 28) * 255).astype(np.uint8)
    expected = sorted(zip(raw_labels.tolist(), map(bytes, raw_images)))
    assert sorted(zip(labels.numpy().tolist(), map(bytes, loaded))) == expected


def test_fashion_mnist_test_split_shapes_dtypes_ranges(fmnist_dir):
    dataset = data.load_classification(
        "fashion_mnist", "test", batch_size=2500, data_dir=fmnist_dir)
    count, labels_seen = 0, set()
    for images, labels in dataset:
        assert images.dtype == "float32" and labels.dtype == "int32"
        assert images.shape[1:] == (28, 28, 1)
        assert images.shape[0] == labels.shape[0]
        assert 0.0 <= float(np.min(images)) and float(np.max(images)) <= 1.0
        count += int(labels.shape[0])
        labels_seen.update(labels.numpy().tolist())
    assert count == 10000 == data.dataset_info("fashion_mnist").splits["test"]
    assert labels_seen == set(range(10))


def test_default_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(common.DATA_DIR_ENV_VAR, str(tmp_path))
    assert data.default_data_dir() == tmp_path
    monkeypatch.delenv(common.DATA_DIR_ENV_VAR)
    assert data.default_data_dir().name == "tensorflow_datasets"


def test_same_seed_same_batches_other_seed_other_batches(fmnist_dir):
    options = {"augment": True, "shuffle": True}
    first = _batches(fmnist_dir, seed=3, **options)
    again = _batches(fmnist_dir, seed=3, **options)
    other = _batches(fmnist_dir, seed=4, **options)
    assert len(first) == len(again) == 4
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(np.concatenate([y for _, y in first]),
                              np.concatenate([y for _, y in other]))
    assert not np.array_equal(first[0][0], other[0][0])


def test_shuffle_permutes_every_iterator_alike_and_each_pass_differs(fmnist_dir):
    plain = np.concatenate([y for _, y in _batches(fmnist_dir)])
    dataset = data.load_classification(
        "fashion_mnist", "train", batch_size=64, limit=64, data_dir=fmnist_dir,
        shuffle=True, seed=0)
    first_iterator = next(iter(dataset))[1].numpy()
    second_iterator = next(iter(dataset))[1].numpy()
    assert sorted(first_iterator) == sorted(plain)
    assert not np.array_equal(first_iterator, plain)
    np.testing.assert_array_equal(first_iterator, second_iterator)  # no state between iterators
    repeated = data.load_classification(
        "fashion_mnist", "train", batch_size=64, limit=64, data_dir=fmnist_dir,
        shuffle=True, seed=0, repeat=True)
    pass0, pass1 = [y.numpy() for _, y in repeated.take(2)]
    np.testing.assert_array_equal(pass0, first_iterator)
    assert sorted(pass1) == sorted(plain) and not np.array_equal(pass1, pass0)


def test_augmentation_keeps_shape_range_and_changes_images(fmnist_dir):
    (plain, labels), = _batches(fmnist_dir, batch_size=64)
    (augmented, augmented_labels), = _batches(fmnist_dir, batch_size=64, augment=True)
    assert augmented.shape == plain.shape == (64, 28, 28, 1)
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0
    np.testing.assert_array_equal(labels, augmented_labels)
    changed = [not np.array_equal(a, p) for a, p in zip(augmented, plain)]
    assert np.mean(changed) > 0.8
    assert np.abs(augmented.mean() - plain.mean()) < 0.05


def test_augment_image_is_a_padded_crop_or_its_mirror():
    image = np.random.default_rng(0).uniform(size=(28, 28, 1)).astype(np.float32)
    padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
    for seed in range(5):
        out = data.augment_image(image, np.array([seed, 7])).numpy()
        candidates = [padded[r:r + 28, c:c + 28] for r in range(9) for c in range(9)]
        candidates += [np.flip(crop, axis=1) for crop in candidates]
        assert any(np.array_equal(out, crop) for crop in candidates)


def test_repeat_and_drop_remainder(fmnist_dir):
    dataset = data.load_classification(
        "fashion_mnist", "train", batch_size=7, limit=20, data_dir=fmnist_dir,
        repeat=True, drop_remainder=True)
    shapes = [tuple(x.shape) for x, _ in dataset.take(6)]
    assert shapes == [(7, 28, 28, 1)] * 6
    assert dataset.element_spec[0].shape.as_list() == [7, 28, 28, 1]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_cifar_fails_at_once_with_the_command(name, tmp_path, monkeypatch):
    _refuse_network(monkeypatch)  # "at once": no download is even attempted
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.load_classification(name, "train", batch_size=8, data_dir=tmp_path)
    message = str(error.value)
    assert f"tfds.builder('{name}', data_dir='DIR').download_and_prepare()" in message
    assert "data_dir" in message
    assert isinstance(error.value, FileNotFoundError)
    assert not list(tmp_path.iterdir())


def test_missing_debian_files_name_the_apt_command(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.prepare_fashion_mnist(tmp_path / "tfds", source_dir=tmp_path / "nothing")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"cifar10.*Received: name='mnist'"):
        data.load_classification("mnist", "train", batch_size=8)
    with pytest.raises(ValueError, match="Received: name='imagenet'"):
        data.dataset_info("imagenet")


def test_dataset_info():
    assert data.dataset_info("cifar100").num_classes == 100
    assert data.dataset_info("cifar10").image_shape == (32, 32, 1)
    assert data.dataset_info("fashion_mnist").splits == {"train": 60000, "test": 10000}


def test_bad_batch_size():
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        data.load_classification("fashion_mnist", "train", batch_size=0)


def test_natural_stimuli_deterministic_in_range_and_distinct():
    stimuli = data.natural_stimuli(3000, seed=1)
    assert stimuli.shape == (3000, 36, 64, 1) and stimuli.dtype == np.float32
    assert stimuli.min() >= 0.0 and stimuli.max() <= 1.0
    assert len(np.unique(stimuli.reshape(3000, -1), axis=0)) == 3000
    np.testing.assert_array_equal(stimuli[:50], data.natural_stimuli(50, seed=1))
    assert not np.array_equal(stimuli[:50], data.natural_stimuli(50, seed=2))
    assert np.all(stimuli.reshape(3000, -1).std(axis=1) > 0)


def test_natural_stimuli_other_size_and_all_photos_load():
    stimuli = data.natural_stimuli(4, height=20, width=30, seed=0)
    assert stimuli.shape == (4, 20, 30, 1)
    assert len(data.NATURAL_IMAGE_NAMES) >= 10
    with pytest.raises(ValueError, match="Received: n=0"):
        data.natural_stimuli(0)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
@pytest.mark.parametrize("with_channel", [False, True])
def test_load_stimuli_round_trip(tmp_path, suffix, with_channel):
    images = np.random.default_rng(0).uniform(size=(5, 12, 16)).astype(np.float32)
    stored = images[..., None] if with_channel else images
    path = tmp_path / f"stimuli{suffix}"
    if suffix == ".npy":
        np.save(path, stored)
    else:
        np.savez(path, stimuli=stored)
    loaded = data.load_stimuli(path)
    assert loaded.shape == (5, 12, 16, 1) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded[..., 0], images)


def test_load_stimuli_rescales_uint8(tmp_path):
    images = np.array([[[0, 255], [51, 102]]], np.uint8)
    np.save(tmp_path / "u8.npy", images)
    np.testing.assert_allclose(
        data.load_stimuli(tmp_path / "u8.npy")[0, ..., 0], [[0, 1], [0.2, 0.4]],
        rtol=1e-6)


def test_load_stimuli_bad_files(tmp_path):
    np.savez(tmp_path / "wrong_key.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"'stimuli'.*Received: keys=\['images'\]"):
        data.load_stimuli(tmp_path / "wrong_key.npz")
    (tmp_path / "s.txt").write_text("0")
    with pytest.raises(ValueError, match="Received: path="):
        data.load_stimuli(tmp_path / "s.txt")
    with pytest.raises(FileNotFoundError):
        data.load_stimuli(tmp_path / "absent.npy")


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4)), r"\(n, height, width\).*Received: stimuli.shape=\(4, 4\)"),
    (np.zeros((2, 4, 4, 3)), r"grayscale.*Received: stimuli.shape=\(2, 4, 4, 3\)"),
    (np.zeros((0, 4, 4)), r"at least one.*Received: stimuli.shape=\(0, 4, 4, 1\)"),
    (np.array([[[0.5, np.nan]], [[0.1, 0.2]]]), r"finite.*indices \[0\].*Received"),
    (np.array([[[0.5, np.inf]]]), r"finite.*Received"),
    (np.array([[[0.0, 255.0]]]), r"\[0, 1\].*divide by 255.*Received: .*max=255"),
    (np.array([[[-0.1, 0.5]]]), r"\[0, 1\].*Received: .*min=-0.1"),
    (np.array([[["a"]]]), r"numeric.*Received: stimuli.dtype"),
])
def test_validate_stimuli_errors(array, message):
    with pytest.raises(ValueError, match=message):
        data.validate_stimuli(array)


def test_split_slices_and_bad_split(fmnist_dir):
    dataset = data.load_classification(
        "fashion_mnist", "test[:5%]", batch_size=100, data_dir=fmnist_dir)
    assert sum(int(labels.shape[0]) for _, labels in dataset) == 500
    with pytest.raises(ValueError, match=r"\['test', 'train'\].*Received: split='validation'"):
        data.load_classification(
            "fashion_mnist", "validation", batch_size=8, data_dir=fmnist_dir)


def test_prepare_command_line_logic(fmnist_dir, tmp_path):
    summary = prepare_cli.prepare("fashion_mnist", str(fmnist_dir))
    assert summary.startswith(f"fashion_mnist is ready in {fmnist_dir}")
    with pytest.raises(data.DatasetNotFoundError, match="download_and_prepare"):
        prepare_cli.prepare("cifar100", str(tmp_path))


def _write_tiny_cifar(data_dir, name, colours):
    """Prepares a stand-in ``name`` in tfds' own format: one flat-colour image each."""
    base = {"cifar10": cifar.Cifar10, "cifar100": cifar.Cifar100}[name]

    class TinyCifar(base, skip_registration=True):

        def _split_generators(self, dl_manager):
            del dl_manager
            return {"train": self._examples(), "test": self._examples()}

        def _examples(self):
            for index, colour in enumerate(colours):
                image = np.broadcast_to(np.asarray(colour, np.uint8), (32, 32, 3))
                record = {"id": f"{index}", "image": image.copy(), "label": index}
                if name == "cifar100":
                    record["coarse_label"] = 0
                yield index, record

    TinyCifar.name = name
    TinyCifar(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_is_grayscale_32x32(name, tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    _write_tiny_cifar(tmp_path, name, colours)
    images, labels = next(iter(data.load_classification(
        name, "train", batch_size=4, data_dir=tmp_path)))
    assert images.shape == (4, 32, 32, 1) and images.dtype == "float32"
    order = np.argsort(labels.numpy())  # tfds stores examples in hashed order.
    np.testing.assert_array_equal(labels.numpy()[order], [0, 1, 2, 3])
    np.testing.assert_allclose(images.numpy()[order, 0, 0, 0],
                               [0.2989, 0.587, 0.114, 1.0], atol=1e-3)
    augmented, _ = next(iter(data.load_classification(
        name, "train", batch_size=4, data_dir=tmp_path, augment=True)))
    assert augmented.shape == (4, 32, 32, 1)
    assert 0.0 <= float(np.min(augmented)) and float(np.max(augmented)) <= 1.0
