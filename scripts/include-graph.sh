#!/bin/sh
# include-graph.sh — the include graph between the parts of the tree (top-level folders, and
# runtime/'s wings), counted from the #include "..." lines of the sources. Prints one line per
# arrow, "from -> to  N", N the number of include lines; with -f FILE prefix, the file-level
# arrows of the files whose path starts with prefix instead. Run from the repository root.
# tests/layout/test_layering.c holds these arrows against the rules of docs/architecture.md.
part() {
	case "$1" in
	runtime/*/*) echo "$1" | cut -d/ -f1-2 ;;
	*/*) echo "$1" | cut -d/ -f1 ;;
	*) echo . ;;
	esac
}
files=$(find runtime snapshot pool kernels functions -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) | sort)
if [ "${1:-}" = -f ]; then
	for f in $files; do
		case "$f" in "$2"*) ;; *) continue ;; esac
		sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
			while read -r inc; do [ -f "$inc" ] && echo "$f -> $inc"; done
	done
	exit 0
fi
for f in $files; do
	from=$(part "$f")
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
		while read -r inc; do
			[ -f "$inc" ] || continue
			to=$(part "$inc")
			[ "$from" = "$to" ] || echo "$from -> $to"
		done
done | sort | uniq -c | awk '{ printf "%-16s -> %-16s %d\n", $2, $4, $1 }'
