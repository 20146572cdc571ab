"""Frozen text encoders: a local Hugging Face folder + a pooling, with length-sorted, deduplicated batching.

from lift.text import TextEncoder
enc = TextEncoder.from_pretrained("default", pooling="auto", max_tokens=77)
enc.encode(["a photo of a cat"])   # Tensor [1, enc.dim], float32, CPU
"""

from lift.text.encoder import TextEncoder, encoder_identity
from lift.text.pooling import POOLING_CHOICES, POOLINGS, register_pooling

__all__ = ["POOLINGS", "POOLING_CHOICES", "TextEncoder", "encoder_identity", "register_pooling"]
