"""Interoperability: read the reference implementation's checkpoints, and hand models to the libraries
users take their encoders to next. One module per responsibility:

  reference        the paper's `.pt` layout -> our config + weights (used by `lift.load`)
  export           the `lift export --format` registry and the atomic folder write
  hf_clip_vision   --format hf-clip-vision: a Hugging Face CLIPVisionModel folder (LLaVA's vision tower)
  open_clip_format --format open_clip: an open_clip `local-dir:` folder (CLIP models)
  clip_benchmark   a clip_benchmark model loader (`--model_type lift`) and its CLI wrapper

Nothing here is imported by `import lift`; each module imports its library on use.
"""
