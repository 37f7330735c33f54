"""Datasets: images as tensors in [0, 1], shape (C, H, W), in a train and a test split."""
from qcsbench.data.base import ImageSet, TensorImageSet
from qcsbench.data.cifar10 import cifar10
from qcsbench.data.image_folder import ImageFolder
from qcsbench.data.mnist import embedded_mnist, mnist_idx

__all__ = ["ImageSet", "TensorImageSet", "embedded_mnist", "mnist_idx", "cifar10", "ImageFolder"]
