#!/bin/sh
# Several nodes on one PostgreSQL registry behind haproxy (issue 18): what forwarding a call to
# the node that holds its function costs against running it where it arrives, and how fast a
# traffic change made on one node reaches the others. CPU only; see bench/cluster.py.
# Env: CLUSTER_CALLS (2000 per side), CLUSTER_CHANGES (60).
set -u
BUILD=${BUILD:-build}
exec python3 bench/cluster.py --build "$BUILD" --calls "${CLUSTER_CALLS:-2000}" \
	--changes "${CLUSTER_CHANGES:-60}"
