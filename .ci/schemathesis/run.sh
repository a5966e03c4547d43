#!/usr/bin/env bash
# Runs schemathesis against the embedded mesh: `run.sh BINARY PORT_BASE`. Starts BINARY on a
# fresh data directory with every service on loopback (openSenseMap, the camera feed and MMGIS
# pointed at a closed port: nothing leaves the machine), seeds a fresh temperature so `/temperature` answers from data,
# then tests every operation of /api/openapi.json, 30 examples each. Fails on any 5xx (but the
# 501 of the RPCs listed in schemathesis.toml), any response that does not match the document,
# and any schema-valid request refused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=$1
base=${2:-18300}
data=$(mktemp -d)
log="$data/outpost.log"
OUTPOST_DATA_DIR="$data" OUTPOST_GATEWAY_ADDR="127.0.0.1:$base" \
  OUTPOST_INGEST_ADDR="127.0.0.1:$((base + 1))" OUTPOST_MEDIA_ADDR="127.0.0.1:$((base + 2))" \
  OUTPOST_TELEMETRY_ADDR="127.0.0.1:$((base + 3))" OUTPOST_PLOTTING_ADDR="127.0.0.1:$((base + 4))" \
  OUTPOST_OPENSENSEMAP_URL=http://127.0.0.1:9 OUTPOST_CAMERA_FEED_URL=http://127.0.0.1:9 \
  OUTPOST_MMGIS_URL=http://127.0.0.1:9 OUTPOST_LOAD_RETRY_SECONDS=0 OUTPOST_LOG=warn \
  "$binary" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
url="http://127.0.0.1:$base"
for _ in $(seq 1 100); do
  curl -fs "$url/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$url/readyz" >/dev/null || { cat "$log"; echo "the mesh is not ready"; exit 1; }
# Seeds what the reads of one resource read (see schemathesis.toml): a device with a fresh
# temperature, a stored object, an image, a snapshot.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
curl -fsS -X POST "$url/api/v1/readings:write" -H 'Content-Type: application/json' \
  -d "{\"readings\": [{\"device\": \"box-1\", \"sensor\": \"temperature\", \"value\": 21.5, \"unit\": \"°C\", \"time\": \"$now\"}]}" >/dev/null
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
object=$(curl -fsS -X POST "$url/api/v1/objects" -H 'Content-Type: application/json' \
  -d '{"object": {"kind": "note", "contentType": "text/plain"}, "content": "aGVsbG8="}' | field "['object']['name']")
python3 -c "
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
rows = b''.join(b'\\x00' + b'\\x80\\x40\\x20' * 4 for _ in range(4))
png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 4, 4, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')
open(sys.argv[1], 'wb').write(png)
" "$data/seed.png"
image=$(curl -fsS -X POST "$url/image_upload" -F "photo=@$data/seed.png;type=image/png" | field "['id']")
snapshot=$(curl -fsS -X POST "$url/store" | field "['download'].split('/')[-1]")
export SEED_OBJECT=${object#objects/} SEED_IMAGE=$image SEED_SNAPSHOT=$snapshot
cd "$data"
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" schemathesis --config-file "$here/schemathesis.toml" run "$url/api/openapi.json" \
  --phases examples,coverage,fuzzing --max-examples 30 --seed 1 --workers 2 \
  --report junit --report-dir "${SCHEMATHESIS_REPORT_DIR:-$data/report}" \
  --output-truncate true
