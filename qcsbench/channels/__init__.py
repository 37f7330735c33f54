"""Channels: noise and quantization after A, and the observation model every method uses."""
from qcsbench.channels.base import Channel, Measurement
from qcsbench.channels.logistic import LogisticChannel
from qcsbench.channels.quantizer import GaussianNoise, UniformQuantizer

__all__ = ["Channel", "Measurement", "UniformQuantizer", "GaussianNoise", "LogisticChannel"]
