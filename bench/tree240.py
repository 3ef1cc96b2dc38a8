#!/usr/bin/env python3
"""The 240,000-file tree of issue 25's memory and 1%-changed figures.  By hand.

    python bench/tree240.py /dev/shm/m240      # makes /dev/shm/m240/src and backup.yaml

2,400 folders of 100 files of random bytes (1 to 7 KB, 938 MB in all) named .txt (``bench.mutate`` edits those; random bytes, so each
change is a binary delta), deterministic (seed 240).  ``bench/floor_changed.py
/dev/shm/m240 --reuse`` uses its backup.yaml and rsync-dest.
"""

import os
import random
import sys
from pathlib import Path

root = Path(sys.argv[1])
rng = random.Random(240)
for d in range(2400):
    folder = root / "src" / f"d{d // 100:02d}" / f"f{d:04d}"
    folder.mkdir(parents=True)
    for f in range(100):
        (folder / f"file{f:03d}.txt").write_bytes(rng.randbytes(rng.randint(1000, 7000)))
(root / "backup.yaml").write_text(f"destination: {root / 'dest'}\nsources: [{root / 'src'}]\n")
