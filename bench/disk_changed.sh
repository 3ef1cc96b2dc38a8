#!/bin/bash
# A run after a 1% change onto a real disk: `rsync -a --delete` then `sync`, beside
# `snapback all` with a commit per folder (SNAPBACK_COMMIT_EVERY=0) and with a commit a
# second (the default), alternating over 6 mutations (bench.mutate).  By hand, as root
# (it makes and mounts an ext4 filesystem on a 6 GB file of /tmp); not in CI.
#
#     bash bench/disk_changed.sh TREE       # TREE/src as bench.generate made it
set -euo pipefail
tree=$(realpath "$1"); here=$(cd "$(dirname "$0")/.." && pwd)
img=/tmp/snapback-bench-ext4.img; mnt=/mnt/snapback-bench; work=$(mktemp -d)
trap 'umount "$mnt" 2>/dev/null || true; rm -f "$img"; rm -rf "$work"' EXIT
umount "$mnt" 2>/dev/null || true
rm -f "$img"; truncate -s 6G "$img"; mkfs.ext4 -q -F "$img"; mkdir -p "$mnt"
mount -o loop "$img" "$mnt"
cp -a "$tree/src" "$work/src"
printf "version: 1\ndestination: %s/dest\nsources:\n  - path: %s/src\n    name: src\n" \
    "$mnt" "$work" > "$work/plan.yaml"
excludes=(--exclude=__pycache__/ --exclude=node_modules/ --exclude=.venv/)
cd "$here"
python -m pipeline all --quiet "config=$work/plan.yaml"
rsync -a --delete "${excludes[@]}" "$work/src/" "$mnt/rsync/"; sync
for seed in 1 2 3 4 5 6; do
    python -c "import sys; sys.path.insert(0, 'bench'); import bench; from pathlib import Path
bench.mutate(Path('$work/src'), $seed)"
    every=$((seed % 2))
    sync; /usr/bin/time -f "mutation $seed: rsync -a --delete, sync: %e s" \
        sh -c 'rsync -a --delete "$@" && sync' rsync "${excludes[@]}" "$work/src/" "$mnt/rsync/"
    sync; /usr/bin/time -f "mutation $seed: snapback all, SNAPBACK_COMMIT_EVERY=$every: %e s" \
        env SNAPBACK_COMMIT_EVERY=$every python -m pipeline all --quiet "config=$work/plan.yaml"
done
