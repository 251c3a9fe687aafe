#!/bin/sh
# One-shot MinIO setup for the compose stack (service minio-init, image minio/mc).
# Idempotent: safe to run on every `docker compose up`.
#   1. the artifact bucket (KUBEDOS_BUCKET, kubedos-artifacts)
#   2. a policy granting read/write on that bucket only
#   3. the workers' user (MINIO_WORKER_ACCESS_KEY / MINIO_WORKER_SECRET_KEY) with that policy
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${MINIO_WORKER_ACCESS_KEY:?}" "${MINIO_WORKER_SECRET_KEY:?}"
BUCKET="${KUBEDOS_BUCKET:-kubedos-artifacts}"
POLICY=kubedos-artifacts-rw

# The server reports healthy before it may accept admin calls: retry for up to a minute.
tries=0
until mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -ge 30 ]; then
    echo "minio-init: MinIO at http://minio:9000 did not accept the root credentials" >&2
    exit 1
  fi
  sleep 2
done

mc mb --ignore-existing "local/$BUCKET"

# The policy file names the bucket kubedos-artifacts; substitute if KUBEDOS_BUCKET differs.
sed "s/kubedos-artifacts/$BUCKET/g" /kubedos-init/kubedos-artifacts-policy.json > /tmp/policy.json
mc admin policy create local "$POLICY" /tmp/policy.json

# On an existing user, `user add` sets the secret key again (a changed secret is applied).
mc admin user add local "$MINIO_WORKER_ACCESS_KEY" "$MINIO_WORKER_SECRET_KEY"
if ! mc admin user info local "$MINIO_WORKER_ACCESS_KEY" | grep -q "$POLICY"; then
  mc admin policy attach local "$POLICY" --user "$MINIO_WORKER_ACCESS_KEY"
fi

echo "minio-init: bucket $BUCKET ready; user $MINIO_WORKER_ACCESS_KEY has policy $POLICY"
