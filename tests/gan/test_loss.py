"""StyleGAN2 loss: every phase runs, regularisers (double backward) match between native and reference ops."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hpcgan.errors import HpcganError
from hpcgan.gan import AugmentPipe, NonFiniteLossError, StyleGAN2Loss, lazy_regularization_adam, set_impl

from .helpers import Z_DIM, make_pair, onehot

N = 4


def _batch(c_dim=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = (torch.rand(N, 1, 32, 32, generator=g, dtype=dtype) * 2 - 1)
    z = torch.randn(N, Z_DIM, generator=g, dtype=dtype)
    c = onehot([0, 1, 1, 0], c_dim, dtype) if c_dim else None
    return real, c, z, c


def _grads(net):
    return {n: (torch.zeros_like(p) if p.grad is None else p.grad.clone()) for n, p in net.named_parameters()}


def _has_grads(net):
    return [n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]


EXPECTED = {
    "Gmain": {"loss_G", "scores_fake"},
    "Greg": {"pl_penalty", "loss_Gpl", "pl_mean"},
    "Gboth": {"loss_G", "scores_fake", "pl_penalty", "loss_Gpl", "pl_mean"},
    "Dmain": {"loss_Dgen", "loss_Dreal", "loss_D", "scores_fake", "scores_real", "Dreal_sign", "n_real"},
    "Dreg": {"r1_penalty", "loss_Dr1", "scores_real", "Dreal_sign", "n_real"},
    "Dboth": {"loss_Dgen", "loss_Dreal", "loss_D", "r1_penalty", "loss_Dr1", "scores_fake", "scores_real",
              "Dreal_sign", "n_real"},
}


@pytest.mark.parametrize("phase", list(EXPECTED))
def test_each_phase_runs_and_trains_only_its_network(phase, gan_pair_cond):
    G, D = gan_pair_cond
    loss = StyleGAN2Loss(G, D, AugmentPipe(p=0.5), r1_gamma=1.0, pl_weight=2.0)
    stats = loss.accumulate_gradients(phase, *_batch())
    assert set(stats) == EXPECTED[phase]
    assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values())
    trained, frozen = (G, D) if phase.startswith("G") else (D, G)
    assert len(_has_grads(trained)) > 0
    assert _has_grads(frozen) == []
    assert all(p.requires_grad for p in frozen.parameters())  # frozen only during the phase
    if "pl_penalty" in stats:
        assert stats["pl_penalty"] > 0 and float(loss.pl_mean) == pytest.approx(stats["pl_mean"]) and stats["pl_mean"] > 0
    if "r1_penalty" in stats:
        assert stats["r1_penalty"] > 0
    if "loss_D" in stats:
        assert stats["loss_D"] == pytest.approx(stats["loss_Dgen"] + stats["loss_Dreal"])


def test_full_training_step_updates_weights(gan_pair_uncond):
    G, D = gan_pair_uncond
    loss = StyleGAN2Loss(G, D, AugmentPipe(p=0.2), r1_gamma=1.0, g_reg_interval=4, d_reg_interval=16)
    assert loss.phases_for_step(0) == ["Gmain", "Greg", "Dmain", "Dreg"]
    assert loss.phases_for_step(1) == ["Gmain", "Dmain"]
    assert loss.phases_for_step(4) == ["Gmain", "Greg", "Dmain"]
    lr, betas = lazy_regularization_adam(0.002, (0.0, 0.99), 4)
    assert lr == pytest.approx(0.002 * 0.8) and betas[1] == pytest.approx(0.99 ** 0.8)
    opt = {"G": torch.optim.Adam(G.parameters(), lr=lr, betas=betas),
           "D": torch.optim.Adam(D.parameters(), *lazy_regularization_adam(0.002, (0.0, 0.99), 16))}
    before = {k: copy.deepcopy(m.state_dict()) for k, m in (("G", G), ("D", D))}
    real, _, z, _ = _batch(c_dim=0)
    for phase in loss.phases_for_step(0):
        net = phase[0]
        opt[net].zero_grad(set_to_none=True)
        stats = loss.accumulate_gradients(phase, real, None, z, None)
        assert all(math.isfinite(v) for v in stats.values())
        opt[net].step()
    for k, m in (("G", G), ("D", D)):
        for name, p in m.named_parameters():
            assert torch.isfinite(p).all(), name
        moved = [n for n, p in m.named_parameters() if not torch.equal(p, before[k][n])]
        assert len(moved) == len(list(m.parameters())), set(n for n, _ in m.named_parameters()) - set(moved)
    assert G.mapping.w_avg.abs().sum() > 0  # the main G pass tracks w_avg


def test_non_lazy_schedule(gan_pair_uncond):
    G, D = gan_pair_uncond
    loss = StyleGAN2Loss(G, D, g_reg_interval=None, d_reg_interval=0)
    assert loss.phases_for_step(0) == ["Gboth", "Dboth"]
    no_reg = StyleGAN2Loss(G, D, r1_gamma=0, pl_weight=0)
    assert no_reg.phases_for_step(0) == ["Gmain", "Dmain"]
    assert "r1_penalty" not in no_reg.accumulate_gradients("Dboth", *_batch(c_dim=0))
    with pytest.raises(ValueError, match="phase"):
        loss.accumulate_gradients("Gall", *_batch(c_dim=0))


@pytest.mark.parametrize("phase", ["Greg", "Dreg"])
def test_regularizer_gradients_native_match_ref(phase):
    """Double backward through G (path length) and D (R1, through the augment pipe) on both op sets.

    float64: the two implementations then agree to ~1e-12; in float32 the lrelu
    kink makes the path-length gradient sensitive to rounding.
    """
    dt = torch.float64
    G, D = make_pair(c_dim=2, impl="native", dtype=dt, channel_max=16)
    Gr, Dr = set_impl(copy.deepcopy(G), "ref"), set_impl(copy.deepcopy(D), "ref")
    results = []
    for g, d in ((G, D), (Gr, Dr)):
        loss = StyleGAN2Loss(g, d, AugmentPipe(p=0.6), r1_gamma=2.0, pl_weight=2.0)
        torch.manual_seed(5)  # same style mixing, noise and augmentations
        stats = loss.accumulate_gradients(phase, *_batch(dtype=dt))
        results.append((stats, _grads(g if phase == "Greg" else d)))
    (s_nat, g_nat), (s_ref, g_ref) = results
    for k in s_ref:
        assert s_nat[k] == pytest.approx(s_ref[k], rel=1e-9, abs=1e-12), k
    assert g_nat.keys() == g_ref.keys()
    nonzero = 0
    for name in g_ref:
        scale = g_ref[name].abs().max().item()
        assert torch.allclose(g_nat[name], g_ref[name], rtol=1e-7, atol=1e-9 * max(scale, 1e-3)), name
        nonzero += scale > 0
    assert nonzero >= len(g_ref) - 4  # (ToRGB biases do not affect the path length)


def test_main_phase_gradients_native_match_ref_float32():
    G, D = make_pair(c_dim=2, impl="native")
    Gr, Dr = set_impl(copy.deepcopy(G), "ref"), set_impl(copy.deepcopy(D), "ref")
    out = []
    for g, d in ((G, D), (Gr, Dr)):
        loss = StyleGAN2Loss(g, d, AugmentPipe(p=0.3))
        torch.manual_seed(9)
        loss.accumulate_gradients("Gmain", *_batch())
        loss.accumulate_gradients("Dmain", *_batch())
        out.append({**_grads(g), **{"D." + k: v for k, v in _grads(d).items()}})
    for name, ref in out[1].items():
        num = (out[0][name] - ref).norm().item()
        assert num <= 1e-3 * ref.norm().item() + 1e-7, name


@pytest.mark.parametrize("phase,attr", [("Greg", "g_reg_interval"), ("Dreg", "d_reg_interval")])
def test_lazy_regularization_is_scaled_by_interval(phase, attr):
    grads = []
    for interval in (1, 8):
        G, D = make_pair(c_dim=0, dtype=torch.float64, channel_max=16)
        loss = StyleGAN2Loss(G, D, r1_gamma=1.0, **{attr: interval})
        torch.manual_seed(3)
        loss.accumulate_gradients(phase, *_batch(c_dim=0, dtype=torch.float64))
        grads.append(_grads(G if phase == "Greg" else D))
    for name in grads[0]:
        assert torch.allclose(grads[1][name], 8 * grads[0][name], rtol=1e-9, atol=1e-12), name


def test_style_mixing(gan_pair_uncond):
    G, D = gan_pair_uncond
    z = torch.randn(N, Z_DIM)
    _, ws = StyleGAN2Loss(G, D, style_mixing_prob=0.0).run_G(z, None)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    for seed in range(4):
        torch.manual_seed(seed)
        _, ws = StyleGAN2Loss(G, D, style_mixing_prob=1.0).run_G(z, None)
        same_as_first = [torch.equal(ws[:, i], ws[:, 0]) for i in range(ws.shape[1])]
        cut = same_as_first.index(False)  # the ws switch to another latent at the cutoff, never back
        assert 1 <= cut < ws.shape[1] and not any(same_as_first[cut:])


def test_pl_mean_state_dict(gan_pair_uncond):
    G, D = gan_pair_uncond
    loss = StyleGAN2Loss(G, D)
    loss.accumulate_gradients("Greg", *_batch(c_dim=0))
    state = loss.state_dict()
    assert float(state["pl_mean"]) > 0
    other = StyleGAN2Loss(G, D)
    other.load_state_dict(state)
    assert float(other.pl_mean) == float(loss.pl_mean)


def test_nan_input_raises_named_error(gan_pair_cond):
    G, D = gan_pair_cond
    real, c, z, _ = _batch()
    real[1, 0, 3, 3] = float("nan")
    loss = StyleGAN2Loss(G, D)
    with pytest.raises(NonFiniteLossError, match="loss_Dreal") as info:
        loss.accumulate_gradients("Dmain", real, c, z, c)
    assert isinstance(info.value, HpcganError)
    assert info.value.term == "loss_Dreal" and info.value.phase == "Dmain"
    with pytest.raises(NonFiniteLossError, match="loss_Dr1"):
        loss.accumulate_gradients("Dreg", real, c, z, c)
    with torch.no_grad():
        G.synthesis.blocks[-1].torgb.bias.fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match="loss_Gmain"):
        loss.accumulate_gradients("Gmain", *_batch())
