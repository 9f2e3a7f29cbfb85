#!/bin/sh
# Build the pack's own environment where PulumiPolicy.yaml says the CLI will look for it (venv/ beside
# this file), from this folder's requirements only. Run once per checkout, before
#   pulumi preview --policy-pack policies --policy-pack-config policies/config/<tier>.json
set -eu
cd "$(dirname "$0")"
"${PYTHON:-python3}" -m venv venv
venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
