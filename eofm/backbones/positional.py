"""Fixed sine-cosine encodings used by MAE-style ViTs.

The 1D form is the Transformer's (Vaswani et al., 2017). The 3D form follows the
Prithvi-EO release (Jakubik et al., 2023): of the embedding width, 6/16 encodes the
column, 6/16 the row and 4/16 the frame, concatenated in that order.
"""

from __future__ import annotations

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``(N,)`` positions -> ``(N, dim)``: sin of all frequencies, then cos."""
    if dim % 2:
        raise ValueError(f"sin-cos width must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def sincos_3d(dim: int, grid: tuple[int, int, int], *, cls_token: bool = True) -> torch.Tensor:
    """Positional table for a ``(frames, rows, cols)`` token grid, flattened t-major.

    Returns ``(1, [1 +] T*H*W, dim)``; the optional first row (for cls) is zeros.
    """
    t, h, w = grid
    w_dim = h_dim = dim // 16 * 6
    t_dim = dim // 16 * 4
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    table = torch.cat(
        [
            sincos_1d(w_dim, ww.reshape(-1)),
            sincos_1d(h_dim, hh.reshape(-1)),
            sincos_1d(t_dim, tt.reshape(-1)),
        ],
        dim=1,
    )
    if table.shape[1] < dim:  # widths not divisible by 16 leave a zero tail
        table = torch.cat([table, table.new_zeros(table.shape[0], dim - table.shape[1])], dim=1)
    if cls_token:
        table = torch.cat([table.new_zeros(1, dim), table], dim=0)
    return table.unsqueeze(0)
