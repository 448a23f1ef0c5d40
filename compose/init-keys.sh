#!/bin/sh
# One-shot service of the compose stack: make the cluster's munge key and JWT key in the keys volume
# (once; later runs keep them), and open up the shared work volume.
set -eu
keys="${1:-/keys}"
shared="${2:-/shared}"
umask 077
for name in munge.key jwt_hs256.key; do
    if [ ! -s "$keys/$name" ]; then
        dd if=/dev/urandom of="$keys/$name.tmp" bs=1024 count=1 status=none
        mv "$keys/$name.tmp" "$keys/$name"
        echo "init-keys: made $keys/$name"
    fi
done
chmod 0700 "$keys"
chmod 0400 "$keys/munge.key" "$keys/jwt_hs256.key"
chmod 1777 "$shared"
