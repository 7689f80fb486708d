"""A mean teacher: the exponential moving average of the student's weights.

Self-ensembling methods (``ustm``, ``s2l``) compare the network with a smoothed copy of
itself (Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017). The
trainer owns one when the method asks for it (``Method.teacher_decay``), updates it after
every optimiser step and saves it in ``last.pt`` so that a resumed run continues exactly.
"""

from __future__ import annotations

import copy

import torch


class EmaTeacher:
    """Weights w_t <- a w_t + (1 - a) w_s after each step, a = min(1 - 1/(step + 1), decay).

    The first steps take the true average of the weights seen so far, as the cited code
    does, so an early teacher is not dominated by its random initialisation. Buffers
    (BatchNorm statistics) are the teacher's own: it runs in training mode, as there,
    so that dropout makes its passes differ.
    """

    def __init__(
        self,
        student: torch.nn.Module,
        decay: float,
        device_type: str = "cpu",
        amp: torch.dtype | None = None,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.net = copy.deepcopy(student)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.device_type, self.amp = device_type, amp  # the student's mixed precision

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's main-decoder logits. Its auxiliary decoder is never asked: the
        methods use the main one only, and USTM asks the teacher nine times per step
        (its step fell from about 8 s to 3.8 s on the 2-core VM at the `acdc` preset)."""
        self.net.train()
        with torch.autocast(self.device_type, dtype=self.amp, enabled=self.amp is not None):
            return self.net(x, aux=False)

    @torch.no_grad()
    def update(self, student: torch.nn.Module, step: int) -> None:
        a = min(1.0 - 1.0 / (step + 1), self.decay)
        for t, s in zip(self.net.parameters(), student.parameters(), strict=True):
            t.mul_(a).add_(s.detach(), alpha=1.0 - a)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state)
