#!/usr/bin/env bash
# Install Debian's SLURM and MUNGE for the single-node test cluster (tests/slurm_cluster.py).
# `make slurm-up` (scripts/slurm/cluster.py) then configures and starts it as this machine's SLURM.
# Idempotent: does nothing when sbatch, slurmctld, slurmd and munged are already on PATH.
# Needs root (or sudo) and an apt source; run by `make slurm-deps`, which `make test` depends on.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for tool in sbatch slurmctld slurmd munged; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm-deps: missing ${missing[*]} and no apt-get: install SLURM (slurmctld, slurmd, sbatch) and MUNGE yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "slurm-deps: missing ${missing[*]}; installing needs root: sudo apt-get install slurm-wlm munge" >&2
        exit 1
    fi
fi
echo "slurm-deps: installing slurm-wlm and munge (missing: ${missing[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
# Package scripts must not try to start daemons inside a container without an init system.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && made_policy=1
fi
trap '[ "$made_policy" = 1 ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge
for tool in sbatch slurmctld slurmd munged; do
    command -v "$tool" >/dev/null 2>&1 || { echo "slurm-deps: $tool still missing after the install" >&2; exit 1; }
done
