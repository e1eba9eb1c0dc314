#!/bin/sh
# One datum = one file of the images repo. Writes, per input file, a small "edges" record:
# the byte count and a checksum, so the output changes whenever the input does.
set -eu
for path in /pfs/images/*; do
  [ -f "$path" ] || continue
  name=$(busybox basename "$path")
  size=$(busybox wc -c <"$path")
  sum=$(busybox sha256sum "$path" | busybox cut -d' ' -f1)
  printf 'file=%s bytes=%s sha256=%s built_from=%s\n' "$name" "$size" "$sum" "${SOURCE_COMMIT:-unknown}" \
    >"/pfs/out/$name.edges"
done
