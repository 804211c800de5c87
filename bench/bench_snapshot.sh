#!/bin/sh
# Snapshot benchmarks (issue 3), each figure with its baseline from the same run:
#  1. size: .thaw vs the BF16 safetensors source, and vs plain `zstd -3` of the source;
#     for a generated 2.2 GB Llama-shaped BF16 model (weights ~ N(0, 0.02)) and the real
#     fixtures in tests/data (mlp_digits: trained F32 weights; llama_tiny: HF-initialised BF16).
#  2. restore to host memory from the page cache vs `cat F > /dev/null` and `zstd -d` of the
#     plain zstd file, GB/s of raw bytes, 1 thread and all threads;
#  3. cold restore (page cache dropped) with io_uring + O_DIRECT vs fio's O_DIRECT sequential
#     read of the same file (the disk's rate);
#  4. with GPU=1 and a CUDA build: restore to the GPU vs safetensors.torch.load_file(path,
#     device="cuda"), warm and cold, same run.
# Env: SNAP_BENCH_DIR (work dir, default /tmp/thaw-bench-snap), SNAP_BENCH_LAYERS (22),
#      REPEAT (5), KEEP=1 keeps the generated files.
set -u
BUILD=${BUILD:-build}
THAW_BIN=${THAW_BIN:-$BUILD/thaw}
GEN=${GEN:-$BUILD/bench/snap_genmodel}
W=${SNAP_BENCH_DIR:-/tmp/thaw-bench-snap}
LAYERS=${SNAP_BENCH_LAYERS:-22}
REPEAT=${REPEAT:-5}
NPROC=$(nproc)
[ -x "$GEN" ] || { echo "bench_snapshot: $GEN missing (make bench builds it)"; exit 1; }
mkdir -p "$W"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$W"' EXIT INT TERM

now() { date +%s.%N; }
fsize() { stat -c %s "$1"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.3f", a / b }'; }
drop() {   # drop the page cache if permitted, else this file's pages
  if [ -w /proc/sys/vm/drop_caches ] && sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then echo drop_caches
  else python3 -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$1" 2>/dev/null && echo fadvise || echo none; fi
}
# rate_of CMD...: median GB/s of RAW bytes ($RAW) over REPEAT runs of CMD (stdout discarded)
rate_of() {
  i=0; while [ $i -lt "$REPEAT" ]; do
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    awk -v n="$RAW" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", n / (b - a) / 1e9 }'
    i=$((i + 1)); done | median
}
restore_med() {   # restore_med ARGS...: median GB/s raw reported by thaw snapshot restore
  "$THAW_BIN" snapshot restore "$@" --repeat "$REPEAT" > "$W/restore.out" 2>&1 || { cat "$W/restore.out"; echo 0; return; }
  grep -E '^restore 1/' "$W/restore.out" | sed 's/^/    /' >&2
  if [ "$REPEAT" -gt 1 ]; then sed -n 's/^median \([0-9.]*\) GB\/s.*/\1/p' "$W/restore.out"
  else sed -n 's/.* = \([0-9.]*\) GB\/s raw.*/\1/p' "$W/restore.out"; fi
}

echo "machine: $(uname -m), $NPROC cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
[ -n "${GPU:-}" ] && command -v nvidia-smi >/dev/null 2>&1 && echo "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"

# ---- 1. size ----
M="$W/model-$LAYERS"
[ -f "$M/model.safetensors" ] || "$GEN" "$M" "$LAYERS" 1 || exit 1
SRC="$M/model.safetensors"
t0=$(now); "$THAW_BIN" snapshot pack "$M" -o "$W/model.thaw" --quiet || exit 1; t1=$(now)
RAW=$("$THAW_BIN" snapshot inspect "$W/model.thaw" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['image_bytes'])")
SRCB=$(fsize "$SRC"); THAWB=$(fsize "$W/model.thaw")
HAVE_ZSTD=0; command -v zstd >/dev/null 2>&1 && HAVE_ZSTD=1
if [ $HAVE_ZSTD = 1 ]; then zstd -q -f -3 -T0 "$SRC" -o "$W/model.safetensors.zst"; ZB=$(fsize "$W/model.safetensors.zst")
else echo "(zstd CLI not installed: zstd baselines skipped)"; ZB=0; fi
echo "size (generated ${LAYERS}-layer BF16 model, $(awk -v n=$SRCB 'BEGIN{printf "%.2f", n/1e9}') GB): thaw/source $(ratio $THAWB $SRCB) (target <= 0.70), zstd -3/source $([ $HAVE_ZSTD = 1 ] && ratio $ZB $SRCB || echo n/a); pack $(awk -v n=$SRCB -v a=$t0 -v b=$t1 'BEGIN{printf "%.2f s, %.0f MB/s", b-a, n/(b-a)/1e6}') on $NPROC threads"
SRC_DIR=${THAW_SRC:-.}/tests/data
for real in mlp_digits llama_tiny; do
  [ -f "$SRC_DIR/$real/model.safetensors" ] || continue
  "$THAW_BIN" snapshot pack "$SRC_DIR/$real" -o "$W/$real.thaw" --quiet --chunk-size 64K
  if [ $HAVE_ZSTD = 1 ]; then zstd -q -f -3 "$SRC_DIR/$real/model.safetensors" -o "$W/$real.zst"
  else cp "$SRC_DIR/$real/model.safetensors" "$W/$real.zst"; fi
  # data bytes only: the .thaw carries 4 KiB of header, compare chunk bytes to tensor bytes
  "$THAW_BIN" snapshot inspect "$W/$real.thaw" --json | python3 -c "
import json,sys; j=json.load(sys.stdin); st=sum(c['stored_bytes'] for c in j['codecs'].values())
z = $(fsize "$W/$real.zst") / $(fsize "$SRC_DIR/$real/model.safetensors")
print('size (real: $real, %s, %d bytes of tensors): thaw chunks/tensor bytes %.3f, whole file/source %.3f, zstd -3/source %s' % (
  ','.join(j['dtypes']), j['image_bytes'], st / j['image_bytes'], j['file_bytes'] / $(fsize "$SRC_DIR/$real/model.safetensors"),
  '%.3f' % z if $HAVE_ZSTD else 'n/a'))"
done

# ---- 2. host restore from the page cache ----
cat "$SRC" "$W/model.thaw" > /dev/null
CAT=$(rate_of sh -c "cat '$SRC' > /dev/null")
ZSTDD=0
if [ $HAVE_ZSTD = 1 ]; then cat "$W/model.safetensors.zst" > /dev/null; ZSTDD=$(rate_of sh -c "zstd -q -d -c '$W/model.safetensors.zst' > /dev/null"); fi
echo "host, warm page cache (GB/s of raw bytes, median of $REPEAT):"
echo "  cat source > /dev/null: $CAT    zstd -d (1 thread) > /dev/null: $ZSTDD"
H1=$(restore_med "$W/model.thaw" --threads 1 --io pread)
HN=$(restore_med "$W/model.thaw" --threads "$NPROC" --io pread)
echo "  thaw restore, 1 thread: $H1 (target >= 2.0; $(ratio $H1 $ZSTDD)x zstd -d)"
echo "  thaw restore, $NPROC threads: $HN ($(ratio $HN $CAT)x cat, $(ratio $HN $ZSTDD)x zstd -d, scaling $(ratio $HN $H1)x on $NPROC cores)"

# ---- 3. cold restore vs the disk ----
echo "cold (page cache dropped: $(drop "$W/model.thaw")):"
if command -v fio >/dev/null 2>&1; then
  drop "$W/model.thaw" >/dev/null
  FIO=$(fio --name=seq --filename="$W/model.thaw" --rw=read --bs=1M --iodepth=32 --ioengine=io_uring --direct=1 \
        --readonly --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{ printf "%.3f", $7 * 1024 / 1e9 }')
  [ -n "$FIO" ] && [ "$FIO" != "0.000" ] || FIO=$(fio --name=seq --filename="$W/model.thaw" --rw=read --bs=1M --iodepth=32 \
        --ioengine=libaio --direct=1 --readonly --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{ printf "%.3f", $7 * 1024 / 1e9 }')
fi
if [ -z "${FIO:-}" ] || [ "$FIO" = "0.000" ]; then   # no fio: dd with O_DIRECT, 16 MiB blocks
  drop "$W/model.thaw" >/dev/null
  FIO=$(dd if="$W/model.thaw" of=/dev/null bs=16M iflag=direct 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "copied,") { printf "%.3f", $1 / $(i + 1) / 1e9 } }')
  echo "  (fio not available: disk rate from dd iflag=direct bs=16M)"
fi
C=$("$THAW_BIN" snapshot restore "$W/model.thaw" --io direct --cold --repeat "$REPEAT" 2>&1 | tee "$W/cold.out" | sed -n 's/^median \([0-9.]*\) GB\/s.*/\1/p')
grep -E '^restore 1/' "$W/cold.out" | sed 's/^/    /'
echo "  fio O_DIRECT sequential read of the .thaw: $FIO GB/s (stored bytes)"
echo "  thaw restore cold: $C GB/s raw = $(ratio ${C:-0} ${FIO:-1})x the disk (target >= 1.3)"

# ---- 4. GPU ----
if [ -n "${GPU:-}" ]; then
  if ! "$THAW_BIN" snapshot restore "$W/model.thaw" --device cuda:0 --repeat 1 > "$W/gpu.out" 2>&1; then
    echo "gpu: skipped: $(tail -1 "$W/gpu.out")"
  else
    cat "$SRC" "$W/model.thaw" > /dev/null
    STW=$(python3 bench/snap_st_baseline.py "$SRC" cuda:0 "$REPEAT" warm 2>&1 | tee "$W/stw.out" | sed -n 's/^median \([0-9.]*\).*/\1/p')
    GW=$("$THAW_BIN" snapshot restore "$W/model.thaw" --device cuda:0 --repeat "$REPEAT" 2>&1 | tee "$W/gw.out" | sed -n 's/^median \([0-9.]*\) GB\/s.*/\1/p')
    STC=$(python3 bench/snap_st_baseline.py "$SRC" cuda:0 3 cold 2>&1 | tee "$W/stc.out" | sed -n 's/^median \([0-9.]*\).*/\1/p')
    GC=$(for i in 1 2 3; do drop "$W/model.thaw" >/dev/null; "$THAW_BIN" snapshot restore "$W/model.thaw" --device cuda:0 --io direct 2>&1 | tee -a "$W/gc.out" | sed -n 's/.* = \([0-9.]*\) GB\/s raw.*/\1/p'; done | median)
    PIN=$(python3 -c "
import torch,time; x=torch.empty(1<<30,dtype=torch.uint8).pin_memory(); y=torch.empty_like(x,device='cuda'); y.copy_(x); torch.cuda.synchronize()
t=time.perf_counter(); [y.copy_(x,non_blocking=True) for _ in range(5)]; torch.cuda.synchronize(); print('%.1f'%(5*(1<<30)/(time.perf_counter()-t)/1e9))" 2>/dev/null)
    echo "gpu ($(sed -n 's/^device cuda:0 (\(.*\)): .*/\1/p' "$W/gw.out" | head -1); pinned host->device copy $PIN GB/s):"
    sed -n 's/^device/    device/p' "$W/gw.out" | head -1
    grep -E '^restore 1/' "$W/gw.out" | sed 's/^/    /'; head -1 "$W/gc.out" | sed 's/^/    /'
    echo "  warm: safetensors.load_file(cuda) $STW GB/s, thaw restore $GW GB/s = $(ratio ${GW:-0} ${STW:-1})x (target >= 3)"
    echo "  cold: safetensors.load_file(cuda) $STC GB/s, thaw restore $GC GB/s = $(ratio ${GC:-0} ${STC:-1})x (target >= 1.3)"
  fi
fi

# ---- machine-readable record (bench/results/restore.tsv, charted by make bench-report) ----
. bench/record.sh
bench_record restore "host warm, 1 thread" "zstd -d" "$([ "$HAVE_ZSTD" = 1 ] && echo "$ZSTDD" || echo -)" "$H1"
bench_record restore "host warm, $NPROC threads" cat "$CAT" "$HN"
bench_record restore "host cold (O_DIRECT)" "disk read" "${FIO:--}" "${C:--}"
if [ -n "${GW:-}" ]; then
  bench_record restore "GPU warm" safetensors "${STW:--}" "$GW"
  bench_record restore "GPU cold" safetensors "${STC:--}" "${GC:--}"
fi
