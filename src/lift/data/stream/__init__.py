"""The stream data order: whole shards read front to back from wherever `webdataset.gopen` opens them
(local paths, `pipe:` commands, http(s):// URLs), for data on object storage or network file systems
where reading samples by random access (the exact order, `lift.data.imagetext`) is the slowest pattern.

The order (every part seeded; nothing depends on timing, download speed or worker scheduling):

- Epoch e permutes the shards by (seed, e). With S = world_size x lanes slots (a lane is a DataLoader
  worker; `workers=0` and `workers=1` both mean one lane), the k-th shard of the permutation goes to slot
  k mod S, slot = rank x lanes + lane: in an epoch every shard belongs to exactly one (rank, worker).
- A slot reads its shards one after the other, sequentially, and passes their samples through a shuffle
  buffer of `buffer` samples seeded by (seed, e, rank, lane): once full, each new sample takes the place
  of one drawn at random, which is yielded; after the slot's last shard the buffer drains at random.
- Augmentation and the caption view drawn use a per-sample seed of (seed, e, shard, position in shard).
- A slot goes on to its shards of epoch e + 1 as soon as its epoch-e samples are out: the stream never
  ends, nothing is dropped or padded, and every rank makes the same number of steps, set by the budget
  (an "epoch" is one pass over the shards, see `epoch_samples`). Slots finish epochs at different times,
  so a batch late in an epoch can mix samples of two epochs.
- Each lane yields whole batches of `batch_size` samples (this rank's share of the global batch; bad
  samples included, as error records, like the exact order's batches); torch's DataLoader takes them
  from lane 0, 1, 2, ... in turn, so each rank's batch sequence is fixed.

Samples follow `lift.data.samples` (webdataset keys; one image, at most one .txt and one .json; a
sample's members must sit next to each other in the tar, as webdataset requires). A bad sample or a
damaged shard (cut short, unreadable, a reader command that fails) becomes an error record naming the
shard, which the main process's error policy counts. CLIP captions come from the parquet beside a local
shard and the sample's own .txt / .json; LIFT reads the store shard named like the image shard
(`lift.data.paths.shard_name`) row by row beside it, so no random key lookups are made (a key missing on
either side is a bad sample, as in `lift.data.index.select_samples`).

Resume: every batch carries its lane's position after it (a few ints: the epoch, samples yielded in it,
the first shard not finished, where the open shards start in the lane's input). The main process records
the position of the last batch it consumed from each lane (`consumed`), and `state_dict()` is what a
checkpoint saves (plain ints and lists). A resumed lane replays its shuffle buffer's draws (ints only, no
data) to know which samples were in the buffer, re-reads the shards holding them from their start,
skipping what was already yielded, and then continues: the resumed stream is exactly the rest of the
uninterrupted one, none repeated, none skipped.

World size and workers: a resume needs the same world size and number of lanes (and the same shards,
seed and buffer; the batch size may change). `load_state_dict(..., relayout=True)` accepts another
layout: the epochs in progress are finished by the new slots from the shards no old slot had finished
(a shard that was part-read is read again from its start, so its samples seen before are seen twice
in that epoch; nothing is skipped), and later epochs follow the new layout's order, which differs from
the old one's. docs/streaming.md says the same for users.
"""

from lift.data.stream.dataset import SHARD_STRIDE, VERSION, StreamDataset, gather_state
from lift.data.stream.epoch_size import epoch_samples
from lift.data.stream.order import DRAW_BLOCK, StreamPlan, _Draws, fresh_position, replay, shard_order
from lift.data.stream.shard import STORE_BATCH, STORE_LOOKAHEAD, TAIL_BYTES, Record, read_shard

__all__ = [
    "DRAW_BLOCK",
    "SHARD_STRIDE",
    "STORE_BATCH",
    "STORE_LOOKAHEAD",
    "TAIL_BYTES",
    "VERSION",
    "Record",
    "StreamDataset",
    "StreamPlan",
    "_Draws",
    "epoch_samples",
    "fresh_position",
    "gather_state",
    "read_shard",
    "replay",
    "shard_order",
]
