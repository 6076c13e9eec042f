"""Mixed precision in StyleGAN2-ADA: which blocks are half, a mixed step against the fp32 step,
non-finite gradient sanitising and its count in stats.jsonl, the settings and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hpcgan.errors import HpcganError
from hpcgan.gan import StyleGAN2Loss
from hpcgan.gan.config import TrainConfig
from hpcgan.gan.layers import fp16_resolution, half_dtype
from hpcgan.gan.loss import GRAD_INF_VALUE, sanitize_gradients
from hpcgan.gan.networks import Discriminator, Generator

from .helpers import TINY_FLAGS, Z_DIM, cli, make_pair, tiny_train_config

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]  # the cuda marker: "no GPU" skip, or a failure with HPCGAN_REQUIRE_GPU=1

# Relative L2 distance ||g_mixed - g_fp32|| / ||g_fp32|| of one phase's whole gradient allowed between
# a mixed-precision step and the fp32 step of the same networks, batch and random draws (see the test).
GRAD_TOL = 0.15
LOSS_RTOL = 0.01  # the loss terms themselves (float32 heads, half features): measured <= 0.3 %


def test_half_blocks_follow_num_fp16_res():
    """StyleGAN2-ADA's rule: the N highest resolutions are half, never below 8x8; 0 means none."""
    assert fp16_resolution(256, 4) == 32 and fp16_resolution(32, 4) == 8 and fp16_resolution(32, 1) == 32
    assert fp16_resolution(256, 0) > 256
    kw = dict(img_resolution=256, channel_base=256, channel_max=4)
    G = Generator(z_dim=8, w_dim=8, mapping_layers=1, num_fp16_res=4, **kw)
    D = Discriminator(num_fp16_res=4, mapping_layers=1, **kw)
    assert {b.resolution: b.use_fp16 for b in G.synthesis.blocks} == {
        4: False, 8: False, 16: False, 32: True, 64: True, 128: True, 256: True}
    assert {b.resolution: b.use_fp16 for b in D.blocks} == {256: True, 128: True, 64: True, 32: True, 16: False,
                                                            8: False}
    assert not any(b.use_fp16 for b in Generator(z_dim=8, w_dim=8, mapping_layers=1, **kw).synthesis.blocks)
    with pytest.raises(ValueError, match="num_fp16_res"):
        Generator(z_dim=8, w_dim=8, num_fp16_res=-1, **kw)
    assert half_dtype("cpu") == torch.bfloat16 and half_dtype("cuda") == torch.float16


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_features_are_half_outputs_float32(device):
    """Half blocks compute in the device's half type; images, logits and the mapping stay float32."""
    G, D = make_pair(c_dim=2, conv_clamp=256, num_fp16_res=3)
    G, D = G.to(device), D.to(device)
    seen: dict[str, torch.dtype] = {}
    for _name, m in [*G.synthesis.blocks.named_children(), *D.blocks.named_children()]:
        owner = "G" if any(m is b for b in G.synthesis.blocks) else "D"
        m.conv1.register_forward_hook(lambda mod, inp, out, k=f"{owner}{m.resolution}": seen.__setitem__(k, out.dtype))
    z = torch.randn(4, Z_DIM, device=device)
    c = torch.eye(2, device=device)[[0, 1, 0, 1]]
    img = G(z, c)
    logits = D(img, c)
    half = half_dtype(device)
    assert img.dtype == torch.float32 and logits.dtype == torch.float32
    assert G.mapping(z, c).dtype == torch.float32
    assert seen == {"G4": torch.float32, "G8": half, "G16": half, "G32": half, "D32": half, "D16": half, "D8": half}
    assert torch.isfinite(img).all() and torch.isfinite(logits).all()


def _phase_grads(mixed: bool, device: str, batch_seed: int = 0) -> dict:
    """Per phase: the loss statistics and the trained network's whole gradient (one vector)."""
    G, D = make_pair(c_dim=2, conv_clamp=256, num_fp16_res=4 if mixed else 0)  # same weights either way
    G, D = G.to(device), D.to(device)
    loss = StyleGAN2Loss(G, D, None, r1_gamma=1.0, pl_weight=2.0)
    g = torch.Generator().manual_seed(batch_seed)
    real = (torch.rand(8, 1, 32, 32, generator=g) * 2 - 1).to(device)
    z = torch.randn(8, Z_DIM, generator=g).to(device)
    c = torch.nn.functional.one_hot(torch.randint(2, (8,), generator=g), 2).float().to(device)
    out = {}
    for phase in ("Gmain", "Greg", "Dmain", "Dreg"):
        net = G if phase.startswith("G") else D
        net.zero_grad(set_to_none=True)
        torch.manual_seed(7)  # the same style mixing and noise in both precisions
        stats = loss.accumulate_gradients(phase, real, c, z, c)
        out[phase] = (stats, torch.cat([p.grad.flatten().double().cpu() for p in net.parameters()
                                        if p.grad is not None]))
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_step_close_to_fp32_step(device):
    """Every phase of a mixed step has finite losses and gradients within GRAD_TOL of the fp32 step.

    The tolerance: bfloat16 keeps 8 significant bits, so every half activation, weight and
    gradient value is rounded by up to 2^-9 = 0.2 % relative. Forward, backward and (PL,
    R1) double backward through 3-4 half blocks, and gradients that are sums over pixels and
    samples of terms of both signs, accumulate this to 2-10 % relative L2 on these
    networks: measured 1.7-9.6 % over four batch seeds (Dmain the largest, Greg the
    smallest). GRAD_TOL = 15 % leaves room for that spread, and is still several times below
    the distance between the fp32 gradients of two different batches (27-320 %), which the
    test also checks, so a mixed step that computed something else would fail.
    """
    ref, mixed, other = _phase_grads(False, device), _phase_grads(True, device), _phase_grads(False, device, 1)
    for phase in ref:
        (s32, g32), (s16, g16), (_, go) = ref[phase], mixed[phase], other[phase]
        assert torch.isfinite(g16).all(), phase
        rel = float((g16 - g32).norm() / g32.norm())
        rel_other = float((go - g32).norm() / g32.norm())
        print(f"{phase}: mixed vs fp32 {rel:.4f}, another batch {rel_other:.3f}")
        assert 0 < rel < GRAD_TOL, (phase, rel)  # 0 would mean the half blocks never ran
        assert rel_other > 2 * GRAD_TOL, (phase, rel_other)
        for key in (k for k in s32 if k.startswith("loss_")):
            assert torch.isfinite(torch.tensor(s16[key])), (phase, key)
            assert s16[key] == pytest.approx(s32[key], rel=LOSS_RTOL, abs=1e-4), (phase, key)


def test_sanitize_gradients_replaces_and_counts():
    a = torch.nn.Parameter(torch.zeros(5))
    b = torch.nn.Parameter(torch.zeros(2, 2))
    c = torch.nn.Parameter(torch.zeros(3))  # no gradient: skipped
    a.grad = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 2.0])
    b.grad = torch.tensor([[3.0, 4.0], [float("nan"), 5.0]])
    assert sanitize_gradients([a, b, c]) == 4
    assert a.grad.tolist() == [1.0, 0.0, GRAD_INF_VALUE, -GRAD_INF_VALUE, 2.0]
    assert b.grad.tolist() == [[3.0, 4.0], [0.0, 5.0]] and c.grad is None
    assert sanitize_gradients([a, b]) == 0


def test_mixed_run_counts_sanitised_gradients(gan_shards, tmp_path):
    """A mixed run: half networks in the snapshot, and a non-finite gradient is zeroed and counted.

    A gradient hook puts one inf and one NaN into a discriminator weight's gradient at every D
    phase of the first step; the step's stats.jsonl line counts the values and the phases,
    the weights stay finite, and the next ticks count nothing.
    """
    from hpcgan.gan.snapshot import load_snapshot
    from hpcgan.gan.train import Trainer

    cfg = tiny_train_config(gan_shards, tmp_path, precision="mixed", kimg=0.024, snap=0)
    trainer = Trainer(cfg)
    assert trainer.G_kwargs["num_fp16_res"] == 4 and trainer.G_kwargs["conv_clamp"] == 256
    assert trainer.D_kwargs["num_fp16_res"] == 4 and trainer.D_kwargs["conv_clamp"] == 256
    w = trainer.D.b4.out.weight

    def poison(g):
        if trainer.step == 0:
            g = g.clone()
            g.view(-1)[0], g.view(-1)[1] = float("inf"), float("nan")
        return g

    w.register_hook(poison)
    result = trainer.run()
    run = Path(result["run_dir"])
    recs = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    d_phases_step0 = len([p for p in trainer.loss.phases_for_step(0) if p.startswith("D")])
    assert recs[0]["step"] == 1 and recs[0]["grad_nonfinite_phases"] == d_phases_step0
    # the hook fires once per backward pass through D's head: Dmain runs D twice (fakes, reals), Dreg once
    assert recs[0]["grad_nonfinite"] >= 2 * d_phases_step0
    assert all(r["grad_nonfinite"] == 0 and r["grad_nonfinite_phases"] == 0 for r in recs[1:])
    assert all(torch.isfinite(p).all() for p in trainer.D.parameters())
    snap = load_snapshot(result["snapshot"])
    assert snap["G_kwargs"]["num_fp16_res"] == 4 and snap["config"]["precision"] == "mixed"
    assert "precision: mixed" in (run / "config.yaml").read_text()


def test_fp32_run_keeps_fp32_networks(gan_shards, tmp_path):
    """fp32 (the default): no half blocks, no clamp, the snapshot kwargs of older versions."""
    cfg = tiny_train_config(gan_shards, tmp_path)
    assert cfg.precision == "fp32" and cfg.num_fp16_res() == 0 and cfg.resolved_conv_clamp() is None
    from hpcgan.gan.train import Trainer

    t = Trainer(cfg)
    assert "num_fp16_res" not in t.G_kwargs and t.G_kwargs["conv_clamp"] is None
    assert not any(b.use_fp16 for b in t.G.synthesis.blocks)


def test_precision_settings_resolve_and_errors(tmp_path):
    base = dict(data=str(tmp_path))
    assert TrainConfig(**base, precision="mixed").resolved_conv_clamp() == 256
    assert TrainConfig(**base, precision="mixed", conv_clamp="none").resolved_conv_clamp() is None
    assert TrainConfig(**base, precision="mixed", conv_clamp=128).resolved_conv_clamp() == 128
    assert TrainConfig(**base, precision="mixed", fp16_res=2).num_fp16_res() == 2
    assert TrainConfig(**base, precision="fp32", fp16_res=2).num_fp16_res() == 0
    for bad, match in ((dict(precision="fp16"), "--precision"), (dict(precision="mixed", fp16_res=-1), "--fp16-res"),
                       (dict(precision="mixed", arch="cdcgan"), "cdcgan"), (dict(conv_clamp=0), "--conv-clamp"),
                       (dict(conv_clamp="big"), "--conv-clamp")):
        with pytest.raises(HpcganError, match=match):
            TrainConfig(**base, **bad).validate()


def test_cli_precision_flags(gan_shards, tmp_path):
    """--help documents the flags; a bad value is a clean error; the paper preset is mixed with 4 half blocks."""
    from hpcgan.config import load

    helptext = cli("train-gan", "--help").stdout
    for flag in ("--precision", "--fp16-res", "--conv-clamp"):
        assert flag in helptext
    proc = cli("train-gan", "--data", gan_shards, "--outdir", tmp_path, "--precision", "mixed", "--fp16-res", "-2",
               *TINY_FLAGS, check=False)
    assert proc.returncode != 0 and "--fp16-res" in proc.stderr and "Traceback" not in proc.stderr
    repo = Path(__file__).resolve().parents[2]
    paper = load(TrainConfig, repo / "configs" / "gan" / "paper-256.yaml", dict(data=str(gan_shards)))
    assert paper.precision == "mixed" and paper.num_fp16_res() == 4 and paper.resolved_conv_clamp() == 256
