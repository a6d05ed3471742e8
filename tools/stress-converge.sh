#!/usr/bin/env bash
# Runs the converge scenario N times (default 200): a guest dirtying memory
# faster than --max-bandwidth, with the dirty-rate-driven auto-converge.
# Each migration is bounded; a hang (a process alive past its bound) or a
# failure is counted and reported.  Usage: tools/stress-converge.sh [N] [TERN]
set -u
n=${1:-200}
tern=${2:-$(dirname "$0")/../build/tools/tern}
guest="simvm:mem=64M,vcpus=2,fill=random,workload=memtouch:ws=32M,pattern=random"
ok=0 fail=0 hang=0
for i in $(seq 1 "$n"); do
	portfile=$(mktemp)
	timeout -s KILL 60 "$tern" receive --listen 127.0.0.1:0 --ready-fd 3 --exit-after-handoff \
		3>"$portfile" >/dev/null 2>&1 &
	rpid=$!
	for _ in $(seq 1 100); do [ -s "$portfile" ] && break; sleep 0.05; done
	port=$(cat "$portfile"); rm -f "$portfile"
	timeout -s KILL 60 "$tern" send --to "127.0.0.1:$port" --guest "$guest" \
		--max-bandwidth 20M --auto-converge rate --timeout 40s --json >/tmp/stress-last.json 2>/tmp/stress-last.err
	rc=$?
	wait "$rpid"; rrc=$?
	if [ $rc -eq 137 ] || [ $rrc -eq 137 ]; then
		hang=$((hang + 1)); echo "run $i: HANG (send $rc, receive $rrc)"; cat /tmp/stress-last.err
	elif [ $rc -ne 0 ] || [ $rrc -ne 0 ]; then
		fail=$((fail + 1)); echo "run $i: failed (send $rc, receive $rrc): $(cat /tmp/stress-last.err)"
	else
		ok=$((ok + 1))
	fi
done
echo "$ok passed, $fail failed, $hang hung"
[ $fail -eq 0 ] && [ $hang -eq 0 ]
