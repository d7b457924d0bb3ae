#!/usr/bin/env bash
# Smoke run of bench/run.sh: one short round of every workload on every
# target. The numbers are too short to quote; this checks the setup works.
# Any knob of run.sh can still be overridden from the environment.
export ROUNDS=${ROUNDS:-1} SECS=${SECS:-3} WARMUP=${WARMUP:-1}
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
