"""Draw what each position method of nmt.attention.positional adds to self-attention, as a function of the query
position i (down) and the key position j (across), before any training: docs/attention/images/position_<method>.png.

    python3 scripts/position_heatmaps.py [--out docs/attention/images] [--length 24]

shaw    the table row clip(j - i, k) + k that a^K_ij and a^V_ij come from (k = 4)
t5      the bucket of j - i (32 buckets, max_distance 128), bidirectional (encoder) and causal (decoder)
rotary  R_i q . R_j k for one q = k (64 dimensions): it depends on i - j only, so every diagonal is constant
alibi   the bias -m_h |i - j| of the steepest (m = 1/2) and the flattest (m = 1/256) of 8 heads

The learned methods (shaw, t5) learn the values behind these indices; the maps show which (i, j) share one.
Reads nothing and needs no run; deterministic (fixed seed), so a rerun gives the same images.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from nmt.attention.positional import Rotary, ShawRelative, alibi_slopes, relative_position_bucket  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "attention" / "images"


def panels(length: int) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """method -> [(title, (T, T) map)]: query position down, key position across."""
    pos = torch.arange(length)[None]  # (1, T)
    rel = pos[0][None, :] - pos[0][:, None]  # (T, T) j - i
    torch.manual_seed(0)
    x = torch.randn(1, 1, 1, 64).expand(1, 1, length, 64)  # one vector at every position
    rotated = Rotary(64, 10000.0).rotate(x, pos)[0, 0]  # (T, 64)
    slopes = alibi_slopes(8)
    return {
        "shaw": [("Shaw: table row clip(j - i, 4) + 4", ShawRelative(2, 4).index(pos, pos)[0].float())],
        "t5": [("T5 bucket, bidirectional (encoder)", relative_position_bucket(rel, True, 32, 128).float()),
               ("T5 bucket, causal (decoder)", relative_position_bucket(rel, False, 32, 128).float())],
        "rotary": [("RoPE: R_i q . R_j q (64 dims)", rotated @ rotated.T)],
        "alibi": [(f"ALiBi head 1: -{slopes[0]:g} |i - j|", -slopes[0] * rel.abs().float()),
                  (f"ALiBi head 8: -1/{1 / slopes[7]:g} |i - j|", -slopes[7] * rel.abs().float())],
    }


def draw(title_maps: list[tuple[str, torch.Tensor]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(title_maps), figsize=(4.2 * len(title_maps), 3.8), squeeze=False)
    for ax, (title, grid) in zip(axes[0], title_maps):
        image = ax.imshow(grid.numpy(), cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key position j")
        ax.set_ylabel("query position i")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})  # no version string: reruns give the same bytes
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--length", type=int, default=24, help="positions per side")
    args = parser.parse_args()
    if args.length < 2:
        parser.error(f"--length must be >= 2, got {args.length}")
    args.out.mkdir(parents=True, exist_ok=True)
    for method, maps in panels(args.length).items():
        draw(maps, args.out / f"position_{method}.png")
        print(args.out / f"position_{method}.png")


if __name__ == "__main__":
    main()
