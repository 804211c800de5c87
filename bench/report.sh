#!/bin/sh
# report.sh — `make bench-report`: charts from the recorded benchmark figures.
# Reads bench/results/*.tsv (one row per measurement: date, machine, then the figures; the bench
# scripts append to them through bench/record.sh, the H100 rows were transcribed from
# docs/benchmarks.md), checks every row, and renders SVG charts with gnuplot into OUT
# (default docs/img):
#   restore.svg     restore GB/s, thaw vs the baseline of the same run (GPU machine)
#   coldstart.svg   first token after scale to zero: restore / load / run, bare restore
#   decode.svg      llama decode tokens/s vs HF transformers (batch 1) and the roofline
#   preemption.svg  preemption latency p50 / p99 / max of time-shared jobs (log scale)
# Env: BENCH_RESULTS (default bench/results), REPORT_GPU (machine substring of the GPU rows,
# default H100), REPORT_FORMAT svg (default) or png. For each chart the last row per case wins (a re-run replaces the older one).
# Exit 1 with FILE:LINE: reason on a malformed row or a missing file.
set -eu
RES=${BENCH_RESULTS:-bench/results}
OUT=${1:-docs/img}
GPU_M=${REPORT_GPU:-H100}
FMT=${REPORT_FORMAT:-svg}
case "$FMT" in
svg) TERM_LINE='set terminal svg size 960,460 dynamic font "sans,12" background "white"' ;;
png) TERM_LINE='set terminal pngcairo size 960,460 font "sans,10" background "white"' ;;
*) echo "bench-report: REPORT_FORMAT must be svg or png" >&2; exit 1 ;;
esac
command -v gnuplot >/dev/null 2>&1 || { echo "bench-report: gnuplot not installed (scripts/install-deps.sh installs gnuplot-nox)" >&2; exit 1; }
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# check FILE HEADER NUMERIC_FROM: the header must match; every row has as many fields, and
# fields from column NUMERIC_FROM on are numbers (or "-" for not measured)
check() {
	f="$RES/$1.tsv"
	[ -f "$f" ] || { echo "bench-report: $f: missing" >&2; exit 1; }
	awk -F'\t' -v f="$f" -v want="$2" -v from="$3" '
	NR == 1 { if ($0 != want) { printf "%s:1: header is \"%s\", expected \"%s\"\n", f, $0, want > "/dev/stderr"; bad = 1; exit 1 }
		  n = NF; next }
	/^[ \t]*$/ { next }
	{
		if (NF != n) { printf "%s:%d: %d fields, expected %d (tab-separated)\n", f, NR, NF, n > "/dev/stderr"; bad = 1; exit 1 }
		if ($1 !~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$/) { printf "%s:%d: date \"%s\" is not YYYY-MM-DD\n", f, NR, $1 > "/dev/stderr"; bad = 1; exit 1 }
		for (i = from; i <= NF; i++)
			if ($i != "-" && $i !~ /^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) {
				printf "%s:%d: field %d (\"%s\") is not a number or -\n", f, NR, i, $i > "/dev/stderr"; bad = 1; exit 1 }
		rows++
	}
	END { if (!bad && rows == 0) { printf "%s: no rows\n", f > "/dev/stderr"; exit 1 } }' "$f"
}
TAB=$(printf '\t')
check restore "date${TAB}machine${TAB}case${TAB}baseline${TAB}baseline_gbps${TAB}thaw_gbps" 5
check coldstart "date${TAB}machine${TAB}run${TAB}bare_restore_ms${TAB}restore_ms${TAB}load_ms${TAB}run_ms${TAB}first_token_ms${TAB}host_tier_ms" 4
check decode "date${TAB}machine${TAB}variant${TAB}decode_tok_s${TAB}hf_batch1_tok_s${TAB}roofline_tok_s" 4
check preemption "date${TAB}machine${TAB}run${TAB}p50_ms${TAB}p99_ms${TAB}max_ms" 4

# last row per key (column 3) among the rows of machines matching m, in first-seen order
latest() {
	awk -F'\t' -v m="$2" 'NR > 1 && index($2, m) && NF > 2 {
		if (!($3 in row)) order[++n] = $3
		row[$3] = $0; mach = $2 }
	END { for (i = 1; i <= n; i++) print row[order[i]]; if (n) print mach > "/dev/stderr" }' "$RES/$1.tsv"
}

latest restore "$GPU_M" > "$TMP/restore.dat" 2> "$TMP/restore.m"
latest coldstart "$GPU_M" > "$TMP/coldstart.dat" 2> "$TMP/coldstart.m"
latest decode "$GPU_M" > "$TMP/decode.dat" 2> "$TMP/decode.m"
for c in restore coldstart decode; do
	[ -s "$TMP/$c.dat" ] || { echo "bench-report: $RES/$c.tsv: no rows for a machine matching '$GPU_M'" >&2; exit 1; }
done
# decode: HF batch 1 (the latest measured) first, then the variants
awk -F'\t' '$5 != "-" { hf = $5 } END { if (hf != "") printf "HF transformers\tbatch 1\t%s\n", hf }' "$TMP/decode.dat" > "$TMP/decode2.dat"
awk -F'\t' '{ printf "thaw\t%s\t%s\n", $3, $4 }' "$TMP/decode.dat" >> "$TMP/decode2.dat"
ROOF=$(awk -F'\t' '$3 == "bf16" && $6 != "-" { r = $6 } END { print r + 0 }' "$TMP/decode.dat")
YMAX=$(awk -F'\t' -v r="$ROOF" 'BEGIN { m = r } $3 > m { m = $3 } END { print m * 1.15 }' "$TMP/decode2.dat")
# preemption: every row, labelled with a short machine name
awk -F'\t' 'NR > 1 && NF > 2 { m = index($2, "H100") ? "H100" : $2; printf "%s\t%s\t%s\t%s\t%s\n", m, $3, $4, $5, $6 }' \
	"$RES/preemption.tsv" > "$TMP/preemption.dat"

M_RESTORE=$(cat "$TMP/restore.m")
M_COLD=$(cat "$TMP/coldstart.m")
M_DEC=$(cat "$TMP/decode.m")
gnuplot > "$TMP/gnuplot.log" 2>&1 <<EOF || { cat "$TMP/gnuplot.log" >&2; echo "bench-report: gnuplot failed" >&2; exit 1; }
$TERM_LINE
set datafile separator "\t"
set datafile missing "-"
set termoption noenhanced
set bmargin 5
set style data histograms
set style fill solid 0.85 border -1
set boxwidth 0.85
set grid ytics lc rgb "#dddddd"
set key top left
set xtics nomirror scale 0 font ",10"
set ytics nomirror

set output "$OUT/restore.$FMT"
set title "Snapshot restore, GB/s of raw bytes: thaw vs the baseline of the same run ($M_RESTORE)"
set ylabel "GB/s"
set style histogram clustered gap 1
set yrange [0:*]
plot "$TMP/restore.dat" using 5:xtic(sprintf("%s\nvs %s", strcol(3), strcol(4))) title "baseline" lc rgb "#9e9e9e", \
     "" using 6 title "thaw" lc rgb "#1f77b4", \
     "" using (\$0 + 0.17):(\$6):(sprintf("%.1fx", \$6 / \$5)) with labels offset 0,0.8 notitle

set output "$OUT/coldstart.$FMT"
set title "First token after scale to zero, from disk (page cache warm), ms ($M_COLD)"
set ylabel "ms"
set style histogram rowstacked
set key top right
plot "$TMP/coldstart.dat" using 5:xtic(3) title "restore" lc rgb "#1f77b4", \
     "" using 6 title "load" lc rgb "#ff7f0e", \
     "" using 7 title "run (the call itself)" lc rgb "#2ca02c", \
     "" using 0:4 with linespoints lw 2 pt 7 lc rgb "#555555" title "bare restore (thaw snapshot restore)", \
     "" using 0:9 with linespoints lw 2 pt 5 lc rgb "#d62728" title "first token from the host tier"

set output "$OUT/decode.$FMT"
set title "llama decode, batch 1, tokens/s: thaw vs HF transformers and the BF16 memory roofline ($M_DEC)"
set ylabel "tokens/s"
set style histogram clustered gap 1
set key top left
set yrange [0:$YMAX]
set arrow 1 from graph 0, first $ROOF to graph 1, first $ROOF nohead lw 2 dt 2 lc rgb "#d62728"
set label 1 sprintf("BF16 roofline %.0f tok/s (3.35 TB/s)", $ROOF) at graph 0.02, first $ROOF offset 0,0.7 tc rgb "#d62728"
plot "$TMP/decode2.dat" using 3:xtic(sprintf("%s\n%s", strcol(1), strcol(2))) notitle lc rgb "#1f77b4", \
     "" using (\$0):3:(sprintf("%.0f", \$3)) with labels offset 0,0.8 notitle
unset arrow 1
unset label 1

set output "$OUT/preemption.$FMT"
set title "Preemption latency of a time-shared job (lane wait of invocation work), ms, log scale"
set ylabel "ms"
set logscale y
set yrange [0.01:50]
set style histogram clustered gap 1
set key top left
plot "$TMP/preemption.dat" using 3:xtic(sprintf("%s\n%s", strcol(2), strcol(1))) title "p50" lc rgb "#2ca02c", \
     "" using 4 title "p99" lc rgb "#ff7f0e", \
     "" using 5 title "max" lc rgb "#d62728"
EOF
for c in restore coldstart decode preemption; do
	[ -s "$OUT/$c.$FMT" ] || { echo "bench-report: $OUT/$c.$FMT was not written" >&2; exit 1; }
	[ "$FMT" != svg ] || grep -q "</svg>" "$OUT/$c.svg" || { echo "bench-report: $OUT/$c.svg is incomplete" >&2; exit 1; }
done
echo "bench-report: $OUT/restore.$FMT $OUT/coldstart.$FMT $OUT/decode.$FMT $OUT/preemption.$FMT"
