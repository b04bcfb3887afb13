#!/usr/bin/env bash
# The nightly evaluation as code, for clusters managed declaratively: run it from the repo
# (CI or a GitOps job) whenever runs/scheduled_evaluation.yaml changes. KFP keeps recurring
# runs in its API server, not as plain manifests, so this is the declarative form.
#   KFP_HOST=https://kubeflow.lab/pipeline KFP_TOKEN=... manifests/recurring-evaluation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
voxelflex pipeline schedule --host "${KFP_HOST:?set KFP_HOST}" \
  --cron "${CRON:-0 3 * * *}" --params-file runs/scheduled_evaluation.yaml \
  --service-account lab-pipelines-runner --name voxelflex-scheduled-evaluation
