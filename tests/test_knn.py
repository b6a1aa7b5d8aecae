"""The weighted kNN classifier of the monitor: hand-built cases, and queries taken in chunks that bound
the memory of the similarities without changing the predictions."""

import json
import subprocess
import sys

import torch
import torch.nn.functional as F

from conftest import ROOT


def test_knn_on_a_hand_built_case(byol):
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]]), dim=1)
    bank_labels = torch.tensor([0, 0, 1, 1, 2])
    query = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0], [-1.0, -0.1]]), dim=1)
    assert byol.knn_predict(query, bank, bank_labels, 3, k=2, t=0.1).tolist() == [0, 1, 2]


def test_knn_votes_are_weighted_by_similarity(byol):
    # One very close neighbour of class 1 outweighs two distant neighbours of class 0 at t = 0.1,
    # but not when every vote counts the same (large t).
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), dim=1)
    bank_labels = torch.tensor([1, 0, 0])
    query = F.normalize(torch.tensor([[1.0, 0.2]]), dim=1)
    assert byol.knn_predict(query, bank, bank_labels, 2, k=3, t=0.1).tolist() == [1]
    assert byol.knn_predict(query, bank, bank_labels, 2, k=3, t=100.0).tolist() == [0]


def test_knn_with_k_larger_than_the_bank(byol):
    bank = F.normalize(torch.randn(5, 8), dim=1)
    labels = torch.tensor([0, 1, 1, 1, 1])
    prediction = byol.knn_predict(bank[:1], bank, labels, 2, k=200, t=100.0)
    assert prediction.tolist() == [1]  # all five vote, almost equally: class 1 wins


def unchunked_knn(query, bank, bank_labels, num_classes, k, t=0.1):
    """The weighted kNN vote computed from one matrix of all similarities."""
    similarity, neighbours = (query @ bank.T).topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(query), num_classes).scatter_add_(
        1, bank_labels[neighbours], (similarity / t).exp()
    )
    return votes.argmax(dim=1)


def clustered(n, centres, generator):
    labels = torch.randint(0, len(centres), (n,), generator=generator)
    features = centres[labels] + 0.7 * torch.randn(n, centres.shape[1], generator=generator)
    return F.normalize(features, dim=1), labels


def test_chunked_queries_give_the_unchunked_predictions(byol):
    # 600 queries against 2**17 bank features: 2**26 similarities make chunks of 512 queries, so the
    # predictions come from two chunks (512 and 88), and must equal those of one 600 x 2**17 matrix
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 4, generator=generator)
    bank, bank_labels = clustered(2**17, centres, generator)
    query, query_labels = clustered(600, centres, generator)
    predicted = byol.knn_predict(query, bank, bank_labels, 10, k=50)
    assert predicted.shape == (600,) and predicted.dtype == torch.int64
    assert torch.equal(predicted, unchunked_knn(query, bank, bank_labels, 10, k=50))
    assert 0.3 < (predicted == query_labels).float().mean() < 1  # a case where the votes matter


MEMORY_PROBE = """
import json, resource, sys
import torch
import torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
from conftest import PYTORCH_SCRIPT, load_script

byol = load_script(PYTORCH_SCRIPT, "byol_pytorch")
generator = torch.Generator().manual_seed(0)
bank = F.normalize(torch.randn(2**18, 8, generator=generator), dim=1)
labels = torch.randint(0, 10, (2**18,), generator=generator)
picked = torch.randperm(2**18, generator=generator)[:4096]
byol.knn_predict(bank[picked[:64]], bank[:4096], labels[:4096], 10, k=5)  # warm-up: kernels, allocator
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
predicted = byol.knn_predict(bank[picked], bank, labels, 10, k=1)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown_kib": grown, "right": (predicted == labels[picked]).float().mean().item()}))
"""


def test_chunks_bound_the_memory_of_the_similarities():
    """4096 queries against 2**18 bank features: one matrix of their similarities would take 4 GiB; in
    chunks of 2**26 similarities (256 MiB), the process's peak memory grows by about that much."""
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(ROOT)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["right"] == 1.0  # every query is a bank feature: its nearest neighbour is itself
    assert result["grown_kib"] < 1024 * 1024  # under 1 GiB (ru_maxrss counts KiB on Linux)
