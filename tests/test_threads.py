"""A SLURM task computes with the CPUs it was given, not one thread per core of the node."""
import pytest
import torch

from qcsbench.device import match_slurm_threads

pytestmark = pytest.mark.fast


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_slurm_task_uses_its_cpus_per_task(threads, monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    match_slurm_threads()
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("env", [{"SLURM_CPUS_PER_TASK": "1", "OMP_NUM_THREADS": "2"}, {}])
def test_omp_num_threads_or_no_slurm_leaves_the_threads(threads, monkeypatch, env):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    torch.set_num_threads(2)
    match_slurm_threads()
    assert torch.get_num_threads() == 2
