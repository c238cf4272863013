# shellcheck shell=bash
# PASS/FAIL checks for the e2e scripts on the real node (e2e/cluster/node-test,
# e2e/operator/real-node-test). The sourcing script sets TMP (a scratch directory),
# PASSED=0, FAILED=() and CHECK_VERBOSE (non-empty: print a passing check's output too).

note() { printf '    %s\n' "$*"; }

# eventually <seconds> <command...>: retry every 0.5 s until it succeeds or time is up.
eventually() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# check <name> <function>: runs it in a subshell with errexit really on (it is ignored inside
# `if`/`$(...)` conditions), prints PASS or FAIL with the time taken and, on failure, the tail
# of its output.
check() {
    local name=$1 t0=$SECONDS out rc
    shift
    set +e
    (set -e; "$@") >"$TMP/check.out" 2>&1
    rc=$?
    set -e
    out=$(cat "$TMP/check.out")
    if ((rc == 0)); then
        printf 'PASS  %-64s %3ss\n' "$name" "$((SECONDS - t0))"
        [[ -n $out && -n ${CHECK_VERBOSE:-} ]] && printf '%s\n' "$out" | sed 's/^/    /'
        PASSED=$((PASSED + 1))
    else
        printf 'FAIL  %-64s %3ss\n' "$name" "$((SECONDS - t0))"
        printf '%s\n' "$out" | tail -n 40 | sed 's/^/    /'
        FAILED+=("$name")
    fi
}
