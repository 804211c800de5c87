#!/bin/sh
# record.sh — sourced by the bench scripts: bench_record NAME FIELD... appends one row
# "date<TAB>machine<TAB>FIELD..." to bench/results/NAME.tsv (BENCH_RESULTS overrides the
# directory), the machine-readable record that `make bench-report` charts (bench/report.sh
# checks the columns against each file's header). A field that was not measured is "-".
# On the device machine, copy bench/results/*.tsv into $OUT to bring the rows back.
bench_machine() {
	if [ "${GPU:-0}" = 1 ] && command -v nvidia-smi >/dev/null 2>&1; then
		nvidia-smi --query-gpu=name --format=csv,noheader | head -1
	else
		echo "$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' | cut -d' ' -f1-2)"
	fi
}
bench_record() {
	_f="${BENCH_RESULTS:-bench/results}/$1.tsv"
	shift
	[ -f "$_f" ] || { echo "bench_record: $_f missing (its header row defines the columns)" >&2; return 1; }
	_row="$(date -u +%Y-%m-%d)	$(bench_machine | tr '\t' ' ')"
	for _c in "$@"; do _row="$_row	${_c:--}"; done
	printf '%s\n' "$_row" >> "$_f"
	echo "recorded in $_f"
}
