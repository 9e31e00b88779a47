"""Tiny random-initialised diffusion pipelines, as a user's own ``make_pipe`` would build them."""

from __future__ import annotations

import torch


def make_dit_pipe():
    """diffusers' own DiTPipeline: a tiny DiT transformer, a tiny VAE, DDIM."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DiTPipeline,
        DiTTransformer2DModel,
    )

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=2, sample_size=4, patch_size=2, num_embeds_ada_norm=1000,
                                        norm_num_groups=1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), latent_channels=4,
                        norm_num_groups=4, sample_size=4)
    pipe = DiTPipeline(transformer=transformer.eval(), vae=vae.eval(), scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_pixart_pipe():
    """The test bed's sampler around a random-initialised tiny PixArt transformer (prompts are digits)."""
    from tradeoff.workloads.tiny_pixart import (
        BedSpec,
        Captions,
        DigitsPipe,
        build_transformer,
    )

    torch.manual_seed(0)
    spec = BedSpec(layers=2)
    model = build_transformer(spec)
    for p in model.proj_out.parameters():  # PixArt starts from a zero output layer: make its output vary
        torch.nn.init.normal_(p, std=0.1)
    return DigitsPipe(model, Captions(spec.caption_tokens, spec.caption_dim))


class FluxSampler:
    """A flow-matching Euler loop over a tiny FLUX transformer, with its own conditioning (no text encoders)."""

    def __init__(self):
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

        torch.manual_seed(0)
        self.transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=2,
                                                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                                  pooled_projection_dim=8, axes_dims_rope=(2, 2, 4)).eval()
        self.scheduler = FlowMatchEulerDiscreteScheduler()
        self.text = torch.nn.Embedding(10, 3 * 16)
        self.pooled = torch.nn.Embedding(10, 8)

    @torch.no_grad()
    def __call__(self, prompts, seeds, steps):
        n, side = len(prompts), 4
        labels = torch.tensor([int(p) for p in prompts])
        x = torch.cat([torch.randn(1, side * side, 4, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        yy, xx = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
        ids = torch.stack([torch.zeros_like(yy), yy, xx], -1).reshape(-1, 3)
        self.scheduler.set_timesteps(steps)
        for t in self.scheduler.timesteps:
            v = self.transformer(x, encoder_hidden_states=self.text(labels).view(n, 3, 16),
                                 pooled_projections=self.pooled(labels), timestep=(t / 1000).expand(n),
                                 img_ids=ids, txt_ids=torch.zeros(3, 3)).sample
            x = self.scheduler.step(v, t, x).prev_sample
        return x.reshape(n, side, side, 4).permute(0, 3, 1, 2).clamp(-1, 1)


def make_flux_sampler():
    return FluxSampler()
