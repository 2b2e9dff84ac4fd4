"""An ``nn.Module`` plug-in (:class:`base.MultimodalModel`) behind the batched-model interface, one
replica at a time: its parameters become views of the engine's ``[1, P]`` buffer, its dropout draws
from torch's generator, seeded from the replica's ``noise`` stream and saved in checkpoints."""
from __future__ import annotations

import numpy as np

from stages.models.base import InputSpec
from stages.models.batched import BatchedModel, BatchedOutput


class ModuleAdapter(BatchedModel):
    vectorised = False

    def __init__(self, module_cls, spec: InputSpec, n_classes: int, options: dict):
        import torch

        super().__init__(spec, n_classes)
        with torch.random.fork_rng(devices=[]):      # building must not disturb anyone's random state
            self.module = module_cls.from_options(spec, n_classes, options)
        self.module_cls, self.options = module_cls, {**module_cls.defaults, **options}
        self.needs_stages, self.batching = module_cls.needs_stages, module_cls.batching
        for name, p in self.module.named_parameters():
            self.shapes[name] = tuple(p.shape)
        self.buffer_names = [name for name, _ in self.module.named_buffers()]

    def inputs_used(self) -> list[str]:
        return self.module.inputs_used(self.spec)

    def initial(self, gen: np.random.Generator) -> np.ndarray:
        """The module's own initialisation, under a torch seed drawn from the replica's init stream."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(gen.integers(2**62)))
            fresh = self.module_cls(self.spec, self.n_classes, **self.options)
        self.module.load_state_dict(fresh.state_dict())
        return np.concatenate([p.detach().reshape(-1).numpy() for p in fresh.parameters()]).astype(np.float32)

    def bind(self, flat, grads=None) -> dict:
        self.module.to(flat.device)
        for (name, p), (a, b) in zip(self.module.named_parameters(), self.offsets().values()):
            p.data = flat[0, a:b].view(p.shape)
            if grads is not None:
                p.grad = grads[0, a:b].view(p.shape)
        self.grad_views = None
        return {}

    def row(self, params: dict, r: int) -> dict:
        return params

    def train_mode(self, on: bool) -> None:
        self.module.train(on)

    def forward(self, params: dict, x: dict, noise: dict | None, y=None) -> BatchedOutput:
        import torch

        out = self.module({k: v[0] for k, v in x.items()}, None if y is None else y[0])
        aux_loss = None if out.aux_loss is None else out.aux_loss.reshape(1)
        return BatchedOutput(out.logits.unsqueeze(0), aux_loss,
                             {k: torch.as_tensor(v).reshape(1) for k, v in out.aux.items()})

    def named_weights(self, row) -> dict:
        named = self.unpack(row)
        named.update({f"buffer:{k}": v.detach().cpu().numpy() for k, v in self.module.named_buffers()})
        return named

    def load_named(self, named: dict, device: str = "cpu"):
        flat = super().load_named({k: v for k, v in named.items() if not k.startswith("buffer:")}, device)
        buffers = dict(self.module.named_buffers())
        for key, value in named.items():
            if key.startswith("buffer:"):
                buffers[key.removeprefix("buffer:")].copy_(value)
        self.bind(flat)
        return flat

    def seed_extra(self, rngs: list) -> None:
        import torch

        torch.manual_seed(int(rngs[0]["noise"].integers(2**62)))

    def get_extra_state(self, r: int, tensors: dict, state: dict) -> None:
        import torch

        tensors["torch_rng"] = torch.get_rng_state()
        if next(self.module.parameters()).is_cuda:
            tensors["cuda_rng"] = torch.cuda.get_rng_state()
        for name, value in self.module.named_buffers():
            tensors[f"buffer:{name}"] = value

    def set_extra_state(self, r: int, tensors: dict, state: dict) -> None:
        import torch

        torch.set_rng_state(tensors["torch_rng"].cpu())
        if "cuda_rng" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["cuda_rng"].cpu())
        buffers = dict(self.module.named_buffers())
        for key, value in tensors.items():
            if key.startswith("buffer:"):
                buffers[key.removeprefix("buffer:")].copy_(value)
