"""The weighted kNN classifier of the monitor."""

import torch
import torch.nn.functional as F


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
