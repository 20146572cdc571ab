"""The synthetic compositional world: `lift synth`'s scenes, captions, test suites and writers.

world.py (vocabularies, scene sampling, relations from geometry) -> render.py (PIL drawing) and
captions.py (short and long captions) -> sugarcrepe.py (hard negatives, checked by checker.py)
-> writer.py (the on-disk formats) -> generate.py (the whole world, parallel and resumable).
"""

from lift.data.synth.checker import caption_holds, parse_caption
from lift.data.synth.generate import SynthConfig, generate_world
from lift.data.synth.world import Scene

__all__ = ["Scene", "SynthConfig", "caption_holds", "generate_world", "parse_caption"]
