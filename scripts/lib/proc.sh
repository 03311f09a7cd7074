# Sourced by the benchmark scripts: CPU figures from /proc, and openssl's
# RSA speed on this machine.

# The machine's jiffies so far, from /proc/stat's cpu line: "busy all steal".
# Steal (time this VM's CPUs were runnable but the hypervisor ran someone
# else) is part of busy.
machine_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $9}' /proc/stat; }

# One reading of the counters a benchmark compares, written to FILE with
# no command started: a process started inside the measured seconds takes
# CPU from the load, and on a saturated machine waits seconds for a core
# (the reading then overran the load it was meant to measure). Lines:
#   machine BUSY ALL STEAL          jiffies, as machine_jiffies
#   group NAME TICKS                for each NAME=PID[,PID...] argument
#   thread NAME TICKS SWITCHES      for each thread of the first group's first PID
#   snapshot SECONDS                when it was taken ($EPOCHREALTIME)
snapshot() {
  local file=$1 line group name pids pid ticks task switches key value
  local -a fields
  shift
  {
    read -r line </proc/stat
    fields=($line)
    echo "machine $((fields[1] + fields[2] + fields[3] + fields[6] + fields[7] + fields[8])) \
$((fields[1] + fields[2] + fields[3] + fields[4] + fields[5] + fields[6] + fields[7] + fields[8])) ${fields[8]}"
    for group in "$@"; do
      name=${group%%=*}
      IFS=, read -r -a pids <<<"${group#*=}"
      ticks=0
      for pid in "${pids[@]}"; do
        { read -r line <"/proc/$pid/stat"; } 2>/dev/null || continue
        fields=(${line##*) })  # after "(comm)": state is 0, utime 11, stime 12
        ticks=$((ticks + fields[11] + fields[12]))
      done
      echo "group $name $ticks"
    done
    pid=${1#*=}
    for task in /proc/${pid%%,*}/task/*; do
      { read -r name <"$task/comm" && read -r line <"$task/stat"; } 2>/dev/null || continue
      fields=(${line##*) })
      switches=0
      while read -r key value; do
        case $key in *ctxt_switches:) switches=$((switches + value)) ;; esac
      done <"$task/status"
      echo "thread ${name// /_} $((fields[11] + fields[12])) $switches"
    done
    echo "snapshot $EPOCHREALTIME"
  } >"$file"
}

# Private-key operations a second on all cores: `openssl speed` for 3 s.
rsa_signs_per_second() { openssl speed -seconds 3 -multi "$(nproc)" rsa2048 2>/dev/null | tail -1 | awk '{print $6}'; }
