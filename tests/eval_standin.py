"""A tiny stand-in for `lift.load`'s model whose embeddings can be computed by hand.

encode_image: the mean RGB of the image (solid-colour PNGs give exact one-hot vectors).
encode_text: the sum of the colour words' RGB vectors (red=(1,0,0), green=(0,1,0), blue=(0,0,1)).
Both L2-normalised. It counts its calls so tests can check batching and cache hits.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
RGB = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "purple": (255, 0, 255),
    "black": (0, 0, 0),
}


class StandIn(nn.Module):
    def __init__(self, version: str = "v1") -> None:
        super().__init__()
        self.preprocess = transforms.Compose([transforms.Resize((4, 4)), transforms.ToTensor()])
        self.text_identity = {"name": "standin", "weights_sha256": f"standin-{version}"}
        self.config = {"method": "standin"}
        self.image_calls = self.images_encoded = self.text_calls = self.texts_encoded = 0

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.image_calls += 1
        self.images_encoded += len(images)
        x = images.float().mean(dim=(2, 3))  # [B, 3]
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        self.text_calls += 1
        self.texts_encoded += len(texts)
        rows = [
            [sum(COLOURS.get(w, (0.0,) * 3)[c] for w in t.lower().split()) for c in range(3)] for t in texts
        ]
        x = torch.tensor(rows, dtype=torch.float32)
        return F.normalize(x, dim=-1) if normalize else x


def solid(path: Path, colour: str, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), RGB[colour]).save(path)
    return path
