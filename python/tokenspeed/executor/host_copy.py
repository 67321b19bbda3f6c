"""``HostCopy``: a launched step's samples on their way to the host."""

from __future__ import annotations

import numpy as np
import torch

from tokenspeed.sampling import SampleOutput


class HostCopy:
    """A step's samples on their way to the host: one asynchronous copy into pinned memory per
    tensor, and an event that ``result`` waits on (the CPU never waits for later steps)."""

    def __init__(self, out: SampleOutput, device: torch.device) -> None:
        self.event: torch.cuda.Event | None = None
        tensors = [out.tokens, out.logprobs, out.top_ids, out.top_logprobs]
        if device.type != "cuda":
            self.host = tensors
            return
        self.host = [
            None if t is None else torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            for t in tensors
        ]
        for dst, src in zip(self.host, tensors, strict=True):
            if dst is not None and src is not None:
                dst.copy_(src, non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record()

    def result(self) -> tuple[bytes, bytes, int, bytes, bytes]:
        if self.event is not None:
            self.event.synchronize()
        tokens, logprobs, top_ids, top_logprobs = self.host
        assert tokens is not None
        token_bytes = tokens.numpy().astype(np.uint32).tobytes()
        if logprobs is None or top_ids is None or top_logprobs is None:
            return token_bytes, b"", 0, b"", b""
        return (
            token_bytes,
            logprobs.numpy().astype(np.float32).tobytes(),
            top_ids.shape[1],
            top_ids.numpy().astype(np.uint32).tobytes(),
            top_logprobs.numpy().astype(np.float32).tobytes(),
        )
