# Sourced by the benchmark scripts: CPU figures from /proc, and openssl's
# RSA speed on this machine.

# Clock ticks (user + system) the processes named have used so far; a
# process that has ended counts nothing.
process_ticks() {
  local ticks=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] && ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$ticks"
}

# One line a thread of process $1: "name ticks context-switches".
thread_table() {
  local task
  for task in /proc/$1/task/*; do
    [ -r "$task/stat" ] || continue
    echo "$(tr ' ' '_' <"$task/comm") $(awk '{print $14 + $15}' "$task/stat") $(awk '/ctxt_switches/ {s += $2} END {print s}' "$task/status")"
  done
}

# The machine's jiffies so far, from /proc/stat's cpu line: "busy all steal".
# Steal (time this VM's CPUs were runnable but the hypervisor ran someone
# else) is part of busy.
machine_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $9}' /proc/stat; }

# Private-key operations a second on all cores: `openssl speed` for 3 s.
rsa_signs_per_second() { openssl speed -seconds 3 -multi "$(nproc)" rsa2048 2>/dev/null | tail -1 | awk '{print $6}'; }
