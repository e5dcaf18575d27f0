#!/usr/bin/env bash
# The `mom` program on bad input, as a user meets it. Every case must end with a non-zero exit below
# 124 (not a crash, a signal or a hang) and a message naming the problem; no sanitizer report may
# appear. Cases that must work are checked too, so that a refusal cannot pass by refusing everything.
#   tests/cli/hardening.sh MOM_BINARY WORK_DIR
set -u
mom="$1"
work="$2"
rm -rf "$work"
mkdir -p "$work"
failed=0

check_output() {  # OUTPUT -> 0 when no sanitizer spoke
  ! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" <<<"$1"
}

# expect_error REGEX COMMAND...: fails with a message matching REGEX.
expect_error() {
  local regex="$1"
  shift
  local out code
  out="$(timeout 300 "$@" 2>&1)"
  code=$?
  if [ "$code" -ge 1 ] && [ "$code" -lt 124 ] && grep -qE -- "$regex" <<<"$out" && check_output "$out"; then
    echo "ok      exit $code: ${*:2}"
  else
    echo "FAILED  exit $code: $*"
    echo "        expected /$regex/, got: $out"
    failed=1
  fi
}

# expect_ok REGEX COMMAND...: succeeds, printing something matching REGEX.
expect_ok() {
  local regex="$1"
  shift
  local out code
  out="$(timeout 300 "$@" 2>&1)"
  code=$?
  if [ "$code" -eq 0 ] && grep -qE -- "$regex" <<<"$out" && check_output "$out"; then
    echo "ok      exit 0: ${*:2}"
  else
    echo "FAILED  exit $code: $*"
    echo "        expected success and /$regex/, got: $out"
    failed=1
  fi
}

loud=(--layers 1 --d-model 16 --d-state 4 --batch 2 --eval-batches 1 --device cpu)
tiny=("${loud[@]}" --seq-len 48 --quiet)

# Flags: every value is checked before anything runs.
expect_error "--seed: '-1' is not a whole number" "$mom" train --seed -1 --out "$work/x"
expect_error "--batch: '' is not a whole number" "$mom" train --batch "" --out "$work/x"
expect_error "--batch: '99999999999999999999' is not a whole number in \[1, 65535\]" "$mom" train --batch 99999999999999999999
expect_error "--d-model: '68831134603393850' is not" "$mom" train --d-model 68831134603393850
expect_error "--layers: '0' is not" "$mom" train --layers 0
expect_error "--clip: 'inf' is outside" "$mom" train --clip inf
expect_error "--min-lr-ratio: 'nan' is outside" "$mom" train --min-lr-ratio nan
expect_error "--min-lr-ratio: '-1' is outside" "$mom" train --min-lr-ratio -1
expect_error "--lr: '' is not a number" "$mom" train --lr ""
expect_error "--eval-batches: '100000000' is not" "$mom" train --eval-batches 100000000
expect_error "error: \[train\] the held-out set" "$mom" train --eval-batches 99999 --out "$work/x"
expect_error "error: \[train\] --batch x --seq-len is 4294836225 tokens" "$mom" train --batch 65535 --seq-len 65535 --out "$work/x"
expect_error "error: \[device\] device index 99999999999" "$mom" train --device cuda:99999999999 --out "$work/x"
expect_error "error: \[train\] --out /dev/null exists and is not a directory" "$mom" train --out /dev/null
expect_error "--out: must not be empty" "$mom" train --out ""
touch "$work/a_file"
expect_error "error: \[train\] --out $work/a_file exists and is not a directory" "$mom" train --out "$work/a_file"
expect_error "--temperature: 'nan' is outside" "$mom" generate "$work/x" --temperature nan
expect_error "--seed: '-3' is not a whole number" "$mom" gradcheck --seed -3
expect_error "--docs: '0' is not" "$mom" data --out "$work/t.tok" --docs 0
test -c /dev/null || { echo "FAILED  /dev/null is no longer a device"; failed=1; }
expect_error "error: \[.*\] .*/dev/null" "$mom" data --out /dev/null --docs 2
test -c /dev/null || { echo "FAILED  /dev/null is no longer a device"; failed=1; }

# Resume: what a resumed run cannot change is refused, naming the flag; what it can, it applies.
run="$work/run"
expect_ok "stopped at step 4" "$mom" train "${loud[@]}" --seq-len 48 --steps 12 --stop-at 4 --out "$run"
expect_error "error: \[train\] --resume: .* --weight-decay 0.1, this run asks for 0.5" \
  "$mom" train --out "$run" --resume --weight-decay 0.5
expect_error "error: \[train\] --resume: the checkpoint is at step 4; give --steps above 4" \
  "$mom" train --out "$run" --resume --steps 3
expect_error "error: \[train\] --resume: --stop-at 2 is not after" "$mom" train --out "$run" --resume --stop-at 2
expect_ok "done: 12 steps" "$mom" train --out "$run" --resume --lr 5e-3
expect_error "error: \[train\] --resume: the checkpoint is at step 12, the end of the run" "$mom" train --out "$run" --resume
expect_ok "loss [0-9.]+ \| text" "$mom" eval "$run"
expect_ok "loss [0-9.]+ \| text" "$mom" eval "$run/checkpoint.safetensors"
expect_ok "loss [0-9.]+ \| text" "$mom" eval "$run/model.safetensors"
expect_error "error: \[train\] --resume: cannot read $work/none/config.json" "$mom" train --out "$work/none" --resume

# compare: runs evaluated on different held-out sets are not comparable.
expect_ok "done: 4 steps" "$mom" train "${loud[@]}" --seq-len 32 --steps 4 --out "$work/short"
expect_error "error: \[compare\] the runs were evaluated on different held-out sets: .* --seq-len" \
  "$mom" compare "$run" "$work/short"
expect_ok "FLOPs" "$mom" compare "$run" "$run"

# Two writers of one run directory: the second is refused while the first holds it; killing the
# first (kill -9) releases it.
busy="$work/busy"
"$mom" train "${tiny[@]}" --steps 100000000 --out "$busy" >/dev/null 2>&1 &
first=$!
for _ in $(seq 1 300); do [ -s "$busy/log.jsonl" ] && break; sleep 0.1; done
expect_error "error: \[train\] --out $busy is in use by another \`mom train\` \(pid $first\)" \
  "$mom" train "${tiny[@]}" --steps 4 --out "$busy"
kill -9 "$first"
wait "$first" 2>/dev/null
expect_ok "" "$mom" train "${tiny[@]}" --steps 4 --out "$busy"

if [ "$failed" -ne 0 ]; then
  echo "cli hardening: FAILED"
  exit 1
fi
echo "cli hardening: every case passed"
