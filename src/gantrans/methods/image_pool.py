"""History buffer of generated images (Shrivastava et al. 2017), as used by CycleGAN."""

from __future__ import annotations

import torch


class ImagePool:
    """Keeps up to `size` past fakes; the discriminator sees a mix of new and old ones.

    For each incoming image: while the buffer is not full, the image is stored and returned;
    after that, with probability 1/2 a random stored image is returned and replaced by the new
    one, otherwise the new image is returned unchanged. size=0 disables the buffer.

    All randomness comes from the pool's own generator, and `state_dict` captures it together
    with the stored images, so a resumed run draws exactly what an uninterrupted one would.

    The stored images stay on the device they came from: no copy to the host and back on every
    step (on a GPU each such round trip waited for the step's kernels). The generator is a CPU
    one, so its draws need no device synchronisation; `state_dict` hands the images over on the
    CPU, so a checkpoint loads on any device.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []  # each (C, H, W), detached, on the images' device
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch the same shape as `images` (N, C, H, W), drawn as described above."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            if torch.rand(1, generator=self.generator).item() < 0.5:
                slot = int(torch.randint(0, self.size, (1,), generator=self.generator).item())
                old = self.images[slot]
                self.images[slot] = image.clone()
                out.append(old.to(image.device, image.dtype))  # a no-op unless just resumed
            else:
                out.append(image)
        return torch.stack(out)

    def __len__(self) -> int:
        return len(self.images)

    def state_dict(self) -> dict:
        return {
            "size": self.size,
            "images": torch.stack(self.images).cpu() if self.images else torch.empty(0),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.images = list(state["images"].unbind(0)) if state["images"].numel() else []
        self.images = [img.clone() for img in self.images[: self.size]]
        self.generator.set_state(state["generator"])
