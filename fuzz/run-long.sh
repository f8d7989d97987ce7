#!/usr/bin/env bash
# Long fuzz runs of every target, one after another, with coverage feedback.
#
#   fuzz/run-long.sh [SECONDS_PER_TARGET] [TARGET ...]     (default 600, all)
#
# Builds the targets the way `cargo fuzz build` does (SanitizerCoverage with
# 8-bit counters, PC table and compare tracing, `--cfg fuzzing`; debug
# assertions and overflow checks from fuzz/Cargo.toml) but on the pinned
# stable toolchain and without AddressSanitizer, which needs nightly; the component is safe Rust,
# so what we hunt is panics, overflows, unbounded recursion and hangs. With
# nightly and cargo-fuzz installed, `cargo +nightly fuzz run TARGET` runs the
# same targets with ASan.
#
# Each target keeps its corpus in fuzz/corpus/TARGET (not committed) and
# writes crashes to fuzz/artifacts/TARGET. A summary line per target goes to
# fuzz/artifacts/summary.tsv: target, seconds, executions, exec/s, coverage,
# features, corpus size, crashes.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-600}
shift || true
all=(odata_query web_api_url next_link fetchxml multipart token_and_error_bodies
  remote_execution_context invoke batch_items)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares"
# Debug assertions and overflow checks come from fuzz/Cargo.toml's release
# profile, not -C flags here: the profile keeps them off in idna and
# idna_adapter (see the root Cargo.toml).
# A target directory of its own: these flags change every artifact.
export CARGO_TARGET_DIR="$PWD/target-long"
# An explicit --target keeps RUSTFLAGS away from build scripts and proc
# macros (they would need libFuzzer's hooks too), as cargo-fuzz does.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --locked --bins --target "$host"

mkdir -p artifacts
summary=artifacts/summary.tsv
[ -f "$summary" ] || printf 'target\tseconds\texecs\texec_per_s\tcov\tft\tcorpus\tcrashes\n' >"$summary"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t.log"
  start=$(date +%s)
  # -rss_limit_mb: the invoke target builds whole pages; 2 GiB is plenty.
  # -timeout: one input taking 10 s counts as a hang (a crash).
  status=0
  "$CARGO_TARGET_DIR/$host/release/$t" "corpus/$t" \
    -artifact_prefix="artifacts/$t/" -max_total_time="$secs" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  took=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(find "corpus/$t" -type f | wc -l)
  crashes=$(find "artifacts/$t" -type f | wc -l)
  rate=$((execs / (took > 0 ? took : 1)))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$took" "$execs" "$rate" "${cov:-?}" "${ft:-?}" "$corpus" "$crashes" >>"$summary"
  echo "$t: ${took}s, $execs execs ($rate/s), cov ${cov:-?}, corpus $corpus, crashes $crashes (exit $status)"
done
column -t -s $'\t' "$summary"
