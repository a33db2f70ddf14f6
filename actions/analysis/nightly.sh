#!/bin/sh
# A nightly job: brook runs it from the actions directory with TagoIO's
# variables set. Here it only reports when it ran and which API it would use;
# a real job would, say, read yesterday's data through "$BROOK_API/data" with
# the run token in a "token" header.
set -eu
echo "nightly run of ${T_ANALYSIS_ID:-nightly} at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "API: ${BROOK_API:-unset}"
