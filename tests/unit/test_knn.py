"""Patch-kNN baseline: distances with known answers, coreset, determinism, the full detector."""

import pytest
import torch

from drdc_trt.config import preset
from drdc_trt.models.backbone import Backbone
from drdc_trt.models.knn import KNNConfig, PatchKNN, greedy_coreset, nearest_distance, random_subset


def test_query_identical_to_a_bank_patch_scores_exactly_zero():
    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(50, 16, generator=gen) * 10
    q = bank[[3, 17, 49]].clone()
    assert torch.equal(nearest_distance(q, bank), torch.zeros(3))


def test_two_patch_bank_hand_computed():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    q = torch.tensor([[3.0, 0.0], [3.0, 5.0], [0.0, -2.0], [1.5, 2.0]])
    # (3,0): 3 to (0,0), 4 to (3,4) → 3;  (3,5): 1;  (0,-2): 2;  (1.5,2): 2.5 to both
    torch.testing.assert_close(nearest_distance(q, bank), torch.tensor([3.0, 1.0, 2.0, 2.5]))


def test_nearest_distance_chunks_agree_with_cdist():
    gen = torch.Generator().manual_seed(1)
    bank, q = torch.randn(300, 8, generator=gen), torch.randn(1000, 8, generator=gen)
    ref = torch.cdist(q, bank).min(1).values
    torch.testing.assert_close(nearest_distance(q, bank, chunk=77), ref, atol=1e-5, rtol=1e-5)


def test_nearest_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="Q×D"):
        nearest_distance(torch.zeros(3, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="empty"):
        nearest_distance(torch.zeros(3, 4), torch.zeros(0, 4))


def test_greedy_coreset_covers_both_clusters():
    feats = torch.tensor([[0.0], [0.1], [0.2], [10.0], [10.1]])
    for seed in range(5):
        idx = greedy_coreset(feats, 2, proj_dim=0, seed=seed).tolist()
        assert len(set(idx)) == 2
        assert {i >= 3 for i in idx} == {True, False}  # one point from each cluster


def test_greedy_coreset_is_k_center_order():
    # start is seeded; after it, each pick is the point farthest from the chosen set
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, 7.0]])
    idx = greedy_coreset(feats, 4, proj_dim=0, seed=0)
    assert sorted(idx.tolist()) == [0, 1, 2, 3]
    assert torch.equal(greedy_coreset(feats, 4, proj_dim=0, seed=0), idx)
    assert torch.equal(greedy_coreset(feats, 9, proj_dim=0), torch.arange(4))


def test_random_subset_seeded():
    a, b = random_subset(100, 10, seed=3), random_subset(100, 10, seed=3)
    assert torch.equal(a, b) and len(set(a.tolist())) == 10
    assert not torch.equal(a, random_subset(100, 10, seed=4))


def test_config_validation():
    with pytest.raises(ValueError, match="stride"):
        KNNConfig(stride=5).validate()
    with pytest.raises(ValueError, match="sampling"):
        KNNConfig(sampling="kmeans").validate()
    with pytest.raises(ValueError, match="local"):
        KNNConfig(local=2).validate()


@pytest.fixture(scope="module")
def tiny_backbone():
    cfg = preset("tiny")
    return Backbone(cfg.backbone, cfg.feature_size), cfg


def test_patch_features_unit_norm_and_grid(tiny_backbone):
    bb, cfg = tiny_backbone
    knn = PatchKNN(bb, cfg.image_size, cfg.score_window, KNNConfig(stride=8, layers=(4, 8, 16)))
    x = torch.rand(3, 3, cfg.image_size, cfg.image_size) * 2 - 1
    f = knn.patch_features(x, batch_size=2)
    assert f.shape[:3] == (3, cfg.image_size // 8, cfg.image_size // 8)
    assert f.shape[3] == sum(bb.net.feature_info.channels()[1:])
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(f.shape[:3]))


@pytest.mark.parametrize("sampling", ["all", "greedy", "random"])
def test_training_images_score_zero_and_fit_is_deterministic(tiny_backbone, sampling):
    bb, cfg = tiny_backbone
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, cfg.image_size, cfg.image_size, generator=gen) * 2 - 1
    kc = KNNConfig(sampling=sampling, bank_size=40 if sampling != "all" else 1)
    knn = PatchKNN(bb, cfg.image_size, cfg.score_window, kc).fit(x, calib=x[:2])
    n_patches = 4 * (cfg.image_size // 8) ** 2
    assert knn.num_patches_seen == n_patches
    assert knn.bank.shape[0] == (n_patches if sampling == "all" else 40)
    again = PatchKNN(bb, cfg.image_size, cfg.score_window, kc).fit(x)
    assert torch.equal(knn.bank, again.bank)
    scores, maps = knn.predict(x)
    assert maps.shape == (4, cfg.image_size, cfg.image_size) and scores.shape == (4,)
    if sampling == "all":
        # every query patch is in the bank: distance 0, and bilinear up-sampling keeps 0
        assert torch.equal(maps, torch.zeros_like(maps)) and torch.equal(scores, torch.zeros(4))
        assert knn.map_mean == 0.0
    y = x.clone()
    y[:, :, 8:20, 8:20] = 1.0  # a bright square no training image has
    s2, m2 = knn.predict(y)
    assert (s2 > scores).all()
    assert m2[:, 8:20, 8:20].mean() > maps[:, 8:20, 8:20].mean()


def test_predict_before_fit_raises(tiny_backbone):
    bb, cfg = tiny_backbone
    with pytest.raises(RuntimeError, match="fit"):
        PatchKNN(bb, cfg.image_size, cfg.score_window).predict(torch.zeros(1, 3, 32, 32))
