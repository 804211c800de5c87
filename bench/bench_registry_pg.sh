#!/bin/sh
# The shared registry's load in a large cluster, measured on a throwaway PostgreSQL 15 (Unix
# socket only, in a temporary directory; run as user postgres when started by root): a nodes
# table of PG_NODES rows (default 100) whose state is the JSON a node publishes with
# PG_RESIDENTS resident functions (default 100: 10,000 functions over 100 nodes), and
#   - heartbeat upserts per second at full speed (synchronous_commit on, and off),
#   - full reads of the live nodes per second (what each node reads every beat),
#   - the 100-node load itself (2 beats/s per node and as many full reads) paced with pgbench
#     --rate: latency p50/p99 and the server's CPU time per second of it,
#   - small write commits per second with and without a NOTIFY in the transaction (4 clients;
#     PostgreSQL serializes the commits that notify on one lock),
#   - a node's CPU time to parse the whole list (jansson; bench/pg/parse_nodes.c),
#   - NOTIFY fan-out to PG_LISTENERS (default 100) listening connections, idle and under that
#     load (bench/pg/notify_lat.c).
# docs/architecture.md ("Several nodes") quotes these figures. Env: PG_SECONDS (default 10 per
# run), PGBIN (default /usr/lib/postgresql/15/bin).
set -u
BUILD=${BUILD:-build}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
NODES=${PG_NODES:-100}
RESIDENTS=${PG_RESIDENTS:-100}
LISTENERS=${PG_LISTENERS:-100}
SECS=${PG_SECONDS:-10}
for b in initdb pg_ctl pgbench psql; do
  [ -x "$PGBIN/$b" ] || { echo "bench_registry_pg: $PGBIN/$b missing (scripts/install-deps.sh installs postgresql)"; exit 1; }
done
command -v pg_config >/dev/null 2>&1 || { echo "bench_registry_pg: pg_config missing (libpq-dev)"; exit 1; }
mkdir -p "$BUILD/bench"
NL="$BUILD/bench/pg_notify_lat"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -I"$(pg_config --includedir)" \
  bench/pg/notify_lat.c -lpq -o "$NL" || exit 1
PN="$BUILD/bench/pg_parse_nodes"
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror bench/pg/parse_nodes.c -ljansson -o "$PN" || exit 1

d=$(mktemp -d "${TMPDIR:-/tmp}/thaw-pgbench.XXXXXX") || exit 1
AS=""
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$d" || exit 1
  AS="runuser -u postgres --"
fi
stop() {
  $AS "$PGBIN/pg_ctl" -D "$d/db" -m immediate stop >/dev/null 2>&1
  rm -rf "$d"
}
trap stop EXIT INT TERM
$AS "$PGBIN/initdb" -D "$d/db" -U postgres -A trust --no-sync >/dev/null || exit 1
$AS "$PGBIN/pg_ctl" -D "$d/db" -l "$d/db/server.log" -w \
  -o "-c listen_addresses='' -c unix_socket_directories='$d' -c max_connections=300 -c shared_buffers=128MB" \
  start >/dev/null || { cat "$d/db/server.log"; exit 1; }
CONN="host=$d user=postgres dbname=postgres"
PSQL="$PGBIN/psql -X -q -v ON_ERROR_STOP=1"

# one node's published state: 8 devices, free bytes, load, RESIDENTS functions
python3 - "$RESIDENTS" > "$d/state.json" <<'PY'
import json, sys
n = int(sys.argv[1])
st = {"devices": [{"device": f"cuda:{i}", "memory_total": 85899345920, "memory_used": 61203283968}
                  for i in range(8)],
      "free_bytes": 197568495616, "load": 0.42,
      "residents": {f"fn-{i:05d}": {"revision": 12, "state": "warm" if i % 3 else "host",
                                     "inflight": i % 4, "room": i % 4 != 3} for i in range(n)}}
sys.stdout.write(json.dumps(st, separators=(",", ":")))
PY
SIZE=$(wc -c < "$d/state.json")
$PSQL "$CONN" <<SQL || exit 1
CREATE TABLE nodes (id text PRIMARY KEY, advertise text NOT NULL, started_at timestamptz NOT NULL,
  beat_at timestamptz NOT NULL, lease_until timestamptz NOT NULL, state text)
  WITH (fillfactor = 50);
INSERT INTO nodes SELECT 'node-' || i, 'http://10.0.' || i || '.5:8080', now(), now(),
  now() + interval '3 s', pg_read_file('$d/state.json') FROM generate_series(1, $NODES) i;
SQL
STATE=$(cat "$d/state.json")
cat > "$d/beat.sql" <<SQL
\set n random(1, $NODES)
INSERT INTO nodes (id, advertise, started_at, beat_at, lease_until, state)
  VALUES ('node-' || :n, 'http://10.0.' || :n || '.5:8080', now(), now(), now() + interval '3 s', '$STATE')
  ON CONFLICT (id) DO UPDATE SET advertise = excluded.advertise, beat_at = excluded.beat_at,
    lease_until = excluded.lease_until, state = excluded.state;
SQL
cat > "$d/list.sql" <<'SQL'
SELECT id, advertise, started_at, beat_at, lease_until, state FROM nodes WHERE lease_until > now() ORDER BY id;
SQL

tps() { sed -nE 's/^tps = ([0-9.]+) .*/\1/p' | head -1; }
# cpu_s: CPU seconds of this server so far (the postmaster, its live children and the reaped ones)
cpu_s() {
  pm=$(head -1 "$d/db/postmaster.pid")
  tck=$(getconf CLK_TCK)
  awk -v pm="$pm" -v tck="$tck" '{ sub(/^[0-9]+ \([^)]*\) /, ""); }
    FILENAME ~ "/" pm "/stat$" { t += $12 + $13 + $14 + $15; next }
    $2 == pm { t += $12 + $13 } END { printf "%.2f\n", t / tck }' /proc/[0-9]*/stat 2>/dev/null
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); PostgreSQL $("$PGBIN/postgres" -V | awk '{print $3}')"
echo "nodes=$NODES residents_per_node=$RESIDENTS state_bytes=$SIZE full_read_bytes=$((SIZE * NODES))"
PG="$PGBIN/pgbench -n -h $d -U postgres postgres"
r=$($PG -c 4 -j 2 -T "$SECS" -f "$d/beat.sql" 2>&1) || { echo "$r"; exit 1; }
echo "beat_upserts_per_s sync_commit=on: $(echo "$r" | tps)"
r=$(PGOPTIONS='-c synchronous_commit=off' $PG -c 4 -j 2 -T "$SECS" -f "$d/beat.sql" 2>&1) || { echo "$r"; exit 1; }
echo "beat_upserts_per_s sync_commit=off: $(echo "$r" | tps)"
# every node alive for the reads (a beat's lease is 3 s; these runs outlast it)
live() { $PSQL "$CONN" -c "UPDATE nodes SET lease_until = now() + interval '1 hour'" || exit 1; }
live
rows=$($PSQL "$CONN" -At -c "SELECT count(*), sum(octet_length(state)) FROM ($(cat "$d/list.sql" | tr -d ';')) l")
echo "a full read returns (rows|state bytes): $rows"
r=$($PG -c 4 -j 2 -T "$SECS" -f "$d/list.sql" 2>&1) || { echo "$r"; exit 1; }
echo "full_node_reads_per_s: $(echo "$r" | tps)"
live

"$PN" "$d/state.json" "$NODES" 20 || exit 1

# a small write with and without a NOTIFY in its transaction (a deploy notifies), 4 clients
for notify in 0 1; do
  {
    printf '%s\n' "\\set n random(1, $NODES)" "\\set f random(1, 10000)"
    echo "BEGIN;"
    echo "UPDATE nodes SET beat_at = now() WHERE id = 'node-' || :n;"
    [ "$notify" = 1 ] && echo "SELECT pg_notify('thaw_registry', 'fn-' || :f);"
    echo "COMMIT;"
  } > "$d/write$notify.sql"
  r=$($PG -c 4 -j 2 -T "$SECS" -f "$d/write$notify.sql" 2>&1) || { echo "$r"; exit 1; }
  echo "small_write_commits_per_s notify=$notify: $(echo "$r" | tps)"
done

# the cluster's own load: every node beats and reads the table every 0.5 s
RATE=$((NODES * 4))
c0=$(cpu_s)
mkdir -p "$d/log" && chmod 777 "$d/log"
r=$(cd "$d/log" && $PG -c 8 -j 2 -T "$SECS" -R "$RATE" -l -f "$d/beat.sql@1" -f "$d/list.sql@1" 2>&1) \
  || { echo "$r"; exit 1; }
c1=$(cpu_s)
lat=$(cat "$d"/log/pgbench_log.* | awk '{ print $3 / 1000 }' | sort -n | awk '{ v[NR] = $1 }
  END { printf "p50_ms=%.2f p99_ms=%.2f", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1] }')
echo "cluster_load rate=$RATE/s (beats+reads): achieved $(echo "$r" | tps)/s $lat server_cpu=$(echo "$c0 $c1 $SECS" | awk '{ printf "%.2f", ($2 - $1) / $3 }') cores"

"$NL" "$CONN" "$LISTENERS" 200 20 32 || exit 1
live
( cd "$d/log" && $PG -c 8 -j 2 -T "$SECS" -R "$RATE" -f "$d/beat.sql@1" -f "$d/list.sql@1" >/dev/null 2>&1 ) &
load=$!
sleep 1
printf 'under cluster_load: '
"$NL" "$CONN" "$LISTENERS" 200 20 32
rc=$?
wait "$load"
exit $rc
