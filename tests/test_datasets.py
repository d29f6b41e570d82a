"""The data sets of `keras-norms compare`: Keras' cache files and image folders, in their real formats.

Every test runs against its own Keras cache (`KERAS_HOME` in a temporary folder) with downloads
blocked: the files are small ones written here in the formats `keras.datasets` reads.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import struct

import keras
import numpy as np
import pytest

from keras_norms import cli
from keras_norms.study import datasets, keras_datasets

N_TRAIN, N_TEST = 30, 10
CIFAR100_LABELS = (0, 57, 99)
IMDB_REVIEWS = {"train": [[5, 30000, 7], list(range(1, 251)), [], [19996, 19997]],
                "test": [[4, 4, 4], list(range(100, 400))]}


class Blocked(Exception):
    """What `keras.utils.get_file` raises without a network (a bare Exception with this text)."""


@pytest.fixture
def attempts():
    """The arguments of each download attempt (with `cache`, every one fails)."""
    return []


@pytest.fixture
def cache(tmp_path, monkeypatch, attempts):
    """An empty Keras cache (`KERAS_HOME`) where downloads fail as they do without a network."""
    home = tmp_path / "keras-home"
    (home / "datasets").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv(keras_datasets.OFFLINE_VARIABLE, raising=False)

    def blocked(fname=None, origin=None, **kwargs):
        attempts.append({"fname": fname, "origin": origin, **kwargs})
        raise Blocked(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name "
                      "resolution")

    monkeypatch.setattr(keras.utils, "get_file", blocked)
    return home


# ----------------------------------------------------------------------------- writers, real formats


def _images(rng, count, shape):
    return rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)


def _mnist_arrays(seed):
    rng = np.random.default_rng(seed)
    return {"x_train": _images(rng, N_TRAIN, (28, 28)), "y_train": (np.arange(N_TRAIN) % 10).astype(np.uint8),
            "x_test": _images(rng, N_TEST, (28, 28)), "y_test": (np.arange(N_TEST) * 7 % 10).astype(np.uint8)}


def write_mnist(folder, seed=0):
    """`mnist.npz`: four uint8 arrays."""
    arrays = _mnist_arrays(seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "mnist.npz", **arrays)
    return arrays


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_fashion_mnist(folder, seed=0):
    """The four gzipped IDX files, as https://github.com/zalandoresearch/fashion-mnist ships them."""
    arrays = _mnist_arrays(seed)
    folder.mkdir(parents=True, exist_ok=True)
    keys = ("y_train", "x_train", "y_test", "x_test")
    for name, key in zip(keras_datasets.FASHION_FILES, keys, strict=True):
        _idx(folder / name, arrays[key])
    return arrays


def _cifar_pickle(path, data, labels, label_key):
    entry = {b"batch_label": path.name.encode(), label_key.encode(): labels, b"data": data,
             b"filenames": [b"%d.png" % k for k in range(len(labels))]}
    if label_key == "fine_labels":
        entry[b"coarse_labels"] = [label // 5 for label in labels]
    # Protocol 4 stores bytes as bytes, as the Python 2 originals do (protocol 2 from Python 3 goes
    # through _codecs.encode, which Keras 3.15's loader refuses).
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=4)


def _rows_to_images(rows):
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def write_cifar10(folder, seed=0):
    """`cifar-10-batches-py`: five training batches of 6 images and a test batch of 10."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows = {name: rng.integers(0, 256, size=(N_TEST if name == "test_batch" else N_TRAIN // 5, 3072),
                               dtype=np.uint8) for name in keras_datasets.CIFAR10_FILES}
    labels = {name: [(i + k) % 10 for k in range(len(r))] for i, (name, r) in enumerate(rows.items())}
    for name in rows:
        _cifar_pickle(folder / name, rows[name], labels[name], "labels")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": N_TRAIN // 5}, f, protocol=2)
    train = [n for n in rows if n != "test_batch"]
    return {"x_train": _rows_to_images(np.concatenate([rows[n] for n in train])),
            "y_train": np.concatenate([labels[n] for n in train]),
            "x_test": _rows_to_images(rows["test_batch"]), "y_test": np.array(labels["test_batch"])}


def write_cifar100(folder, seed=0):
    """`cifar-100-python`: one `train` and one `test` pickle with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    arrays = {}
    for part, count in (("train", N_TRAIN), ("test", N_TEST)):
        rows = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        labels = [CIFAR100_LABELS[k % 3] for k in range(count)]
        _cifar_pickle(folder / part, rows, labels, "fine_labels")
        arrays[f"x_{part}"], arrays[f"y_{part}"] = _rows_to_images(rows), np.array(labels)
    with open(folder / "meta", "wb") as f:
        names = {b"fine_label_names": [b"apple"] * 100, b"coarse_label_names": [b"fruit"] * 20}
        pickle.dump(names, f, protocol=2)
    return arrays


def _ragged(reviews):
    array = np.empty(len(reviews), dtype=object)
    array[:] = [list(r) for r in reviews]
    return array


def imdb_encoding(review):
    """Keras' IMDB encoding (start 1, out-of-vocabulary 2, ids from 3, 20000 words), pre-padded to 200."""
    ids = [1] + [w + 3 if w + 3 < 20000 else 2 for w in review]
    ids = ids[-200:]
    return np.array([0] * (200 - len(ids)) + ids, dtype=np.int32)


def write_imdb(folder, seed=0):
    """`imdb.npz` (ragged object arrays of word ranks, labels sorted as in the real file), word index."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, count in (("train", N_TRAIN), ("test", N_TEST)):
        fixed = IMDB_REVIEWS[part]
        drawn = [rng.integers(1, 25000, size=rng.integers(5, 60)).tolist() for _ in range(count - len(fixed))]
        reviews = fixed + drawn
        arrays[f"x_{part}"] = _ragged(reviews)
        arrays[f"y_{part}"] = (np.arange(count) >= count // 2).astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "imdb.npz", **arrays)
    (folder / "imdb_word_index.json").write_text(json.dumps({"the": 1, "and": 2, "a": 3}))
    return {"x_train": np.stack([imdb_encoding(r) for r in arrays["x_train"]]), "y_train": arrays["y_train"],
            "x_test": np.stack([imdb_encoding(r) for r in arrays["x_test"]]), "y_test": arrays["y_test"]}


#: Each data set's writer and the folder under the cache's datasets/ where Keras 3 keeps its files.
WRITERS = {
    "mnist": (write_mnist, "."),
    "fashion_mnist": (write_fashion_mnist, "fashion-mnist"),
    "cifar10": (write_cifar10, "cifar-10-batches-py-target/cifar-10-batches-py"),
    "cifar100": (write_cifar100, "cifar-100-python-target/cifar-100-python"),
    "imdb": (write_imdb, "."),
}
KERAS_NAMES = list(WRITERS)


def write(name, home, seed=0):
    writer, folder = WRITERS[name]
    return writer(home / "datasets" / folder, seed)


def _as_written(x, name):
    """Examples back in the files' dtype (images were scaled to [0, 1])."""
    if datasets.DATASETS[name].input == "tokens":
        return x
    return np.round(x * 255).astype(np.uint8)


def _rows(x):
    return sorted(row.tobytes() for row in x)


# ----------------------------------------------------------------------------- Keras' cache


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_keras_dataset_loads_from_the_cache_without_a_network(name, cache, attempts):
    written = write(name, cache)
    data = datasets.load(name, seed=0)
    info = datasets.DATASETS[name]
    assert attempts == []
    for x in (data.x_train, data.x_val, data.x_test):
        assert x.shape[1:] == info.shape
        if info.input == "image":
            assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
        else:
            assert x.dtype == np.int32 and 0 <= x.min() and x.max() < info.vocabulary_size
    for y in (data.y_train, data.y_val, data.y_test):
        assert y.dtype == np.int32 and set(y.tolist()) <= set(range(info.num_classes))
    # Validation: 10% of the training files, disjoint from the rest; the test set is the test file's.
    assert len(data.y_val) == math.ceil(0.1 * N_TRAIN) and len(data.y_train) == N_TRAIN - len(data.y_val)
    train, val = _as_written(data.x_train, name), _as_written(data.x_val, name)
    assert not set(_rows(train)) & set(_rows(val))
    assert _rows(np.concatenate([train, val])) == _rows(written["x_train"])
    assert _rows(_as_written(data.x_test, name)) == _rows(written["x_test"])
    # Every example keeps its label.
    label_of = {row.tobytes(): int(y) for part in ("train", "test")
                for row, y in zip(written[f"x_{part}"], written[f"y_{part}"], strict=True)}
    for x, y in ((train, data.y_train), (val, data.y_val), (_as_written(data.x_test, name), data.y_test)):
        assert [label_of[row.tobytes()] for row in x] == y.tolist()
    # --train-size keeps a seeded subset of the training set and nothing else changes.
    small = datasets.subsample(data, 12, seed=0)
    assert len(small.y_train) == 12 and set(_rows(_as_written(small.x_train, name))) <= set(_rows(train))
    np.testing.assert_array_equal(small.x_val, data.x_val)
    np.testing.assert_array_equal(small.x_test, data.x_test)
    again, other = datasets.load(name, seed=0), datasets.load(name, seed=1)
    np.testing.assert_array_equal(again.x_val, data.x_val)
    assert _rows(other.x_val) != _rows(data.x_val)


_KERAS_MODULES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10",
                  "cifar100": "cifar100", "imdb": "imdb"}


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_the_readers_agree_with_keras_own_loader_on_the_same_files(name, cache, monkeypatch):
    import importlib

    write(name, cache)
    module = importlib.import_module(f"keras.src.datasets.{_KERAS_MODULES[name]}")

    def cached(fname=None, origin=None, cache_subdir="datasets", **kwargs):
        return str(cache / cache_subdir / fname)  # Keras' own path, without checking our small files' hash

    monkeypatch.setattr(module, "get_file", cached)
    if name == "cifar10":  # Keras' loader wants 10,000 images a batch: compare batch by batch
        folder = cache / "datasets" / WRITERS[name][1]
        (x_train, y_train), (x_test, y_test) = (
            [np.concatenate(parts) for parts in zip(*(module.load_batch(str(folder / n)) for n in names),
                                                     strict=True)]
            for names in (keras_datasets.CIFAR10_FILES[:5], keras_datasets.CIFAR10_FILES[5:]))
        x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    elif name == "imdb":
        (x_train, y_train), (x_test, y_test) = module.load_data(num_words=keras_datasets.IMDB_NUM_WORDS)
    else:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    if name == "imdb":
        length = keras_datasets.IMDB_LENGTH
        x_train, x_test = (keras.utils.pad_sequences(x, maxlen=length) for x in (x_train, x_test))
    elif x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    ours = keras_datasets.load_arrays(name)
    theirs_all = (x_train, y_train, x_test, y_test)
    for mine, theirs in zip((a for pair in ours for a in pair), theirs_all, strict=True):
        np.testing.assert_array_equal(mine, np.asarray(theirs).reshape(mine.shape))


def test_imdb_tokens_are_keras_encoding_padded_and_truncated_at_the_start(cache):
    write_imdb(cache / "datasets")
    (x_train, _), _ = keras_datasets.load_arrays("imdb")
    rows = {row.tobytes(): row for row in x_train}
    short = np.zeros(200, np.int32)
    short[-4:] = [1, 8, 2, 10]  # start, 5 + 3, out of the 20000 words, 7 + 3
    assert short.tobytes() in rows
    long = np.arange(51, 251, dtype=np.int32) + 3  # the last 200 of 250 words: the start mark is cut
    assert long.tobytes() in rows
    def padded(ids):
        return np.array([0] * (200 - len(ids)) + ids, np.int32).tobytes()

    assert padded([1]) in rows  # an empty review
    assert padded([1, 19999, 2]) in rows  # ids from 20000 on are out of the vocabulary


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_a_missing_file_is_one_line_that_says_where_it_goes(name, cache, attempts):
    with pytest.raises(datasets.DataError) as caught:
        datasets.load(name)
    message = str(caught.value)
    folder = cache / "datasets" / WRITERS[name][1]
    assert len(message.splitlines()) == 1
    assert "the download failed (URL fetch failure on https://" in message
    expected = {"mnist": str(cache / "datasets" / "mnist.npz"), "imdb": str(cache / "datasets" / "imdb.npz"),
                "fashion_mnist": f"train-labels-idx1-ubyte.gz, train-images-idx3-ubyte.gz, "
                                 f"t10k-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz in {folder}/",
                "cifar10": f"data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, "
                           f"test_batch in {folder}/",
                "cifar100": f"train, test in {folder}/"}[name]
    assert f"{name}: missing {expected} and" in message
    if name in ("mnist", "imdb"):
        url = f"https://storage.googleapis.com/tensorflow/tf-keras-datasets/{name}.npz"
        assert f"download {url} into {cache / 'datasets'}/" in message
    if name.startswith("cifar"):
        assert f"into {folder.parent}/ (it unpacks as {folder.name}/)" in message
    # The download was tried into this cache, with Keras' checksum where Keras has one.
    assert attempts and all(call["cache_dir"] == str(cache) for call in attempts)
    assert all(call["file_hash"] is not None for call in attempts) == (name != "fashion_mnist")


def test_offline_forbids_downloads_and_only_missing_files_are_fetched(cache, monkeypatch, attempts):
    monkeypatch.setenv(keras_datasets.OFFLINE_VARIABLE, "1")
    with pytest.raises(datasets.DataError, match="downloads are off"):
        datasets.load("mnist")
    assert attempts == []
    monkeypatch.delenv(keras_datasets.OFFLINE_VARIABLE)
    write_fashion_mnist(cache / "datasets" / "fashion-mnist")
    (cache / "datasets" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    missing = r"missing \S+t10k-images-idx3-ubyte.gz and the download failed"
    with pytest.raises(datasets.DataError, match=missing):
        datasets.load("fashion_mnist")
    assert [(c["fname"], c["origin"], c["cache_subdir"]) for c in attempts] == [
        ("t10k-images-idx3-ubyte.gz",
         "https://storage.googleapis.com/tensorflow/tf-keras-datasets/t10k-images-idx3-ubyte.gz",
         "datasets/fashion-mnist")]


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_download_lands_where_the_loader_reads(name, cache, monkeypatch):
    calls = []

    def download(fname, origin, file_hash=None, cache_subdir="datasets", extract=False, cache_dir=None):
        calls.append((fname, origin, file_hash, extract))
        target = os.path.join(cache_dir, cache_subdir, fname)
        # What get_file leaves: the file itself, or the archive's contents under datasets/<fname>/.
        if extract:
            write(name, cache)
        else:
            write_mnist(cache / cache_subdir)
        return target

    monkeypatch.setattr(keras.utils, "get_file", download)
    assert len(datasets.load(name).y_test) == N_TEST
    expected = {"mnist": ("mnist.npz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
                          keras_datasets.KERAS_FILES["mnist"].sha256, False),
                "cifar10": ("cifar-10-batches-py-target", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                            keras_datasets.KERAS_FILES["cifar10"].sha256, True)}[name]
    assert calls == [expected]


def test_keras_home_follows_keras_rule(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keras_datasets.keras_home() == tmp_path / ".keras"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "elsewhere"))
    assert keras_datasets.keras_home() == tmp_path / "elsewhere"


def test_older_keras_layouts_and_data_dir_hold_the_same_files(cache, tmp_path, attempts):
    write_cifar10(cache / "datasets" / "cifar-10-batches-py")  # where Keras 2 extracted it
    assert len(datasets.load("cifar10").y_test) == N_TEST
    shared = tmp_path / "shared"
    write_mnist(shared)
    write_fashion_mnist(shared / "fashion-mnist")
    write_cifar100(shared / "cifar-100-python")
    for name in ("mnist", "fashion_mnist", "cifar100"):
        assert len(datasets.load(name, data_dir=shared).y_test) == N_TEST
    # A folder holding the files themselves works too.
    assert len(datasets.load("cifar100", data_dir=shared / "cifar-100-python").y_test) == N_TEST
    assert len(datasets.load("fashion_mnist", data_dir=shared / "fashion-mnist").y_test) == N_TEST
    missing = r"--data-dir \S+: missing imdb.npz in \S+shared/; point it at"
    with pytest.raises(datasets.DataError, match=missing):
        datasets.load("imdb", data_dir=shared)
    assert attempts == []  # nothing is downloaded into (or for) a --data-dir


def _damage_npz_key(path):
    arrays = dict(np.load(path))
    del arrays["y_test"]
    np.savez(path, **arrays)


def _evil_pickle(path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with open(path, "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f, protocol=2)


@pytest.mark.parametrize(("name", "damage", "message"), [
    ("mnist", lambda f: (f / "mnist.npz").write_bytes(b"not a zip"), "mnist.npz is damaged"),
    ("mnist", lambda f: _damage_npz_key(f / "mnist.npz"), "no item named 'y_test.npy'"),
    ("fashion_mnist", lambda f: (f / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x0d\x01")),
     "t10k-labels-idx1-ubyte.gz is damaged or not in the expected format (no IDX header"),
    ("fashion_mnist", lambda f: (f / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b truncated"),
     "train-images-idx3-ubyte.gz is damaged"),
    ("cifar10", lambda f: _evil_pickle(f / "data_batch_2"), "refusing to load posix.system"),
    ("cifar10", lambda f: _cifar_pickle(f / "test_batch", np.zeros((10, 3072), np.uint8), [10] * 10,
                                        "labels"),
     "test_batch: labels 10..10, expected 0..9"),
    ("cifar100", lambda f: _cifar_pickle(f / "test", np.zeros((10, 3072), np.uint8), [1] * 10, "labels"),
     "has no 'data' and 'fine_labels' entries"),
    ("imdb", lambda f: (f / "imdb.npz").write_bytes((f / "imdb.npz").read_bytes()[:500]),
     "imdb.npz is damaged"),
])
def test_a_damaged_file_is_a_data_error_that_names_it(name, damage, message, cache):
    write(name, cache)
    damage(cache / "datasets" / WRITERS[name][1])
    with pytest.raises(datasets.DataError) as caught:
        datasets.load(name)
    assert message in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_cli_missing_mnist_exits_2_with_one_line(cache, tmp_path, capsys):
    assert cli.main(["compare", "--dataset", "mnist", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("keras-norms compare: error: mnist: missing ")
    assert str(cache / "datasets" / "mnist.npz") in err


def test_token_ids_are_never_resized():
    tokens = np.ones((4, 200), np.int32)
    assert datasets.fit_to_shape(tokens, (200,)) is tokens
    with pytest.raises(datasets.DataError, match=r"token ids of shape \(200,\) cannot be brought to shape"):
        datasets.fit_to_shape(tokens, (200, 1))


# ----------------------------------------------------------------------------- image folders


def write_image_folder(root, classes=("cat", "dog", "owl"), per_class=7, size=(12, 10), channels=3, seed=0):
    """PNG files in one subfolder per class; returns {file name: (pixels, label)}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for label, name in enumerate(sorted(classes)):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, size=(*size, channels), dtype=np.uint8)
            Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(root / name / f"{seed}-{k}.png")
            written[pixels.tobytes()] = label
    return written


def test_image_folder_is_split_seeded_and_stratified(tmp_path):
    written = write_image_folder(tmp_path / "photos")
    data = datasets.load("images", seed=0, data_dir=tmp_path / "photos")
    assert data.x_train.shape[1:] == (12, 10, 3) and data.x_train.dtype == np.float32
    assert (len(data.y_test), len(data.y_val), len(data.y_train)) == (5, 2, 14)  # 20% of 21, 10% of 16
    seen = {}
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)):
        assert y.dtype == np.int32
        for image, label in zip(_as_written(x, "images"), y, strict=True):
            seen[image.tobytes()] = int(label)
    assert seen == written  # every image once, with the label of its sorted class folder
    small = datasets.subsample(data, 6, seed=0)
    assert len(small.y_train) == 6 and set(small.y_train.tolist()) == {0, 1, 2}
    other = datasets.load("images", seed=1, data_dir=tmp_path / "photos")
    assert _rows(other.x_test) != _rows(data.x_test)


def test_image_folder_with_train_and_test_keeps_its_test_set(tmp_path):
    gray = {"classes": ("a", "b"), "size": (9, 9), "channels": 1}
    train = write_image_folder(tmp_path / "train", per_class=5, **gray)
    test = write_image_folder(tmp_path / "test", per_class=2, seed=1, **gray)
    data = datasets.load("images", data_dir=tmp_path)
    assert data.x_test.shape == (4, 9, 9, 1)
    assert {x.tobytes(): int(y) for x, y in zip(_as_written(data.x_test, "images")[..., 0], data.y_test,
                                                strict=True)} == test
    assert len(data.y_train) + len(data.y_val) == len(train) and len(data.y_val) == 1


def test_large_images_are_read_at_most_256_pixels_a_side(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=3, size=(300, 150))
    assert datasets.load("images", data_dir=tmp_path).x_test.shape[1:] == (256, 128, 3)


@pytest.mark.parametrize(("setup", "message"), [
    (lambda p: None, "is not a folder"),
    (lambda p: write_image_folder(p, classes=("only",)), "2 or more classes"),
    (lambda p: (write_image_folder(p / "train", classes=("a", "b")),
                write_image_folder(p / "test", classes=("a",))),
     "test/ has the class folders ['a'], train/ has ['a', 'b']"),
    (lambda p: (write_image_folder(p), (p / "cat" / "0-0.png").write_bytes(b"not a png")),
     "0-0.png is not a readable image"),
    (lambda p: (write_image_folder(p), (p / "dog" / "0-3.png").write_bytes(b"not a png")),
     "cannot read the images in"),
])
def test_bad_image_folders_are_data_errors(setup, message, tmp_path):
    folder = tmp_path / "photos"
    setup(folder)
    with pytest.raises(datasets.DataError) as caught:
        datasets.load("images", data_dir=folder)
    assert message in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_images_needs_a_data_dir_and_digits_refuses_one(tmp_path):
    with pytest.raises(datasets.DataError, match="--dataset images needs --data-dir"):
        datasets.load("images")
    with pytest.raises(datasets.DataError, match="'digits' is bundled with scikit-learn"):
        datasets.load("digits", data_dir=tmp_path)


def test_the_registry_says_what_each_data_set_gives():
    assert {"mnist", "fashion_mnist", "cifar10", "cifar100", "imdb", "images", "digits", "seq-digits"} == set(
        datasets.DATASETS)
    assert {info.input for info in datasets.DATASETS.values()} == {"image", "sequence", "tokens"}
    assert datasets.DATASETS["imdb"].vocabulary_size == keras_datasets.IMDB_NUM_WORDS
    assert set(keras_datasets.KERAS_FILES) == set(KERAS_NAMES)
    assert datasets.DEFAULT_TARGET_ACCURACY.keys() == datasets.DATASETS.keys()
