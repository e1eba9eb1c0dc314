#!/bin/sh
# A single datum holds all of images and all of edges: list every edges record with its image.
set -eu
out=/pfs/out/montage.txt
: >"$out"
for record in /pfs/edges/*.edges; do
  [ -f "$record" ] || continue
  image=$(busybox basename "$record" .edges)
  if [ -f "/pfs/images/$image" ]; then
    printf '%s\t%s\n' "$image" "$(busybox cat "$record")" >>"$out"
  fi
done
