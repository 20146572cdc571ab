"""What a frozen text encoder can teach, measured on text alone (issue 17, `lift probe`).

LIFT trains an image tower to land on the frozen encoder's vector of its caption, so two captions
whose vectors (nearly) coincide are a distinction no tower can learn from that target. These probes
measure that ceiling before any GPU time is spent, on any `embed(texts) -> [N, D]` callable (a
`TextEncoder`, a store's encoder followed by its transform, or a stub in tests):

    probe_pairs(embed, [(pos, neg), ...], margin=0.01)          # SugarCrepe-style pairs
    probe_sugarcrepe(embed, "world/sugarcrepe")                  # every task file of a folder
    probe_classes(embed, class_prompts(names, templates))        # zero-shot class prompts
    probe_captions(embed, captions, groups=image_ids)            # a caption set (retrieval ceiling)
    probe_geometry(vectors)                                      # anisotropy and effective rank

All cosines are of L2-normalised vectors (what the loss compares). A pair or neighbour counts as
*too close* when its cosine is at least `1 - margin`; the default margin 0.01 (cosine 0.99, a
Euclidean distance of 0.14 between unit targets) is our convention for "closer than a trained head's
prediction error can plausibly resolve", not a law: the quantiles are reported beside it.

`encoder_subject` / `store_subject` build the things to compare (one column each), `probe_subject`
runs every probe on one, and `probe_report` / `markdown_report` put them side by side.
"""

from lift.probe.figures import (
    CLOSEST,
    DEFAULT_MARGIN,
    QUANTILES,
    Embed,
    check_margin,
    distribution,
    embed_matrix,
    memoized,
    probe_captions,
    probe_classes,
    probe_geometry,
    probe_pairs,
    probe_sugarcrepe,
    unit,
)
from lift.probe.inputs import (
    DEFAULT_SAMPLE,
    CaptionSet,
    ProbeInputs,
    class_prompts,
    default_template,
    read_caption_set,
    read_class_list,
    read_inputs,
    read_sugarcrepe_pairs,
    sample_store_vectors,
    sugarcrepe_files,
)
from lift.probe.report import REPORT_FORMAT, markdown_report, probe_report, probe_subject
from lift.probe.subjects import (
    Subject,
    encoder_embed,
    encoder_subject,
    store_encoder_identity,
    store_subject,
    transform_identity,
)

__all__ = [
    "CLOSEST",
    "CaptionSet",
    "DEFAULT_MARGIN",
    "DEFAULT_SAMPLE",
    "Embed",
    "ProbeInputs",
    "QUANTILES",
    "REPORT_FORMAT",
    "Subject",
    "check_margin",
    "class_prompts",
    "default_template",
    "distribution",
    "embed_matrix",
    "encoder_embed",
    "encoder_subject",
    "markdown_report",
    "memoized",
    "probe_captions",
    "probe_classes",
    "probe_geometry",
    "probe_pairs",
    "probe_report",
    "probe_subject",
    "probe_sugarcrepe",
    "read_caption_set",
    "read_class_list",
    "read_inputs",
    "read_sugarcrepe_pairs",
    "sample_store_vectors",
    "store_encoder_identity",
    "store_subject",
    "sugarcrepe_files",
    "transform_identity",
    "unit",
]
