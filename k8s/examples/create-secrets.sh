#!/usr/bin/env bash
# Creates the three Secrets Vigil reads, with fresh random passwords. NOT part of any
# kustomization and never commit its output: secret values live only in the cluster (or in
# your secret manager; an ExternalSecret/SealedSecret producing the same names and keys works
# too). Run once per cluster, before `kubectl apply -k` (docs/DEPLOY.md).
#
#   NAMESPACE=vigil k8s/examples/create-secrets.sh
#
# Secrets and keys:
#   vigil-mysql      password, root-password    MariaDB's vigil and root accounts
#   vigil-db         database-url               mysql://vigil:<password>@vigil-mysql:3306/vigil
#                                               (VIGIL__INGEST__DATABASE_URL, VIGIL__STORAGE__DATABASE_URL,
#                                                VIGIL__DASHBOARD__DATABASE_URL)
#   vigil-dashboard  session-key                VIGIL__DASHBOARD__SESSION_KEY
set -euo pipefail
NAMESPACE=${NAMESPACE:-vigil}
# URL-safe random strings (no characters that need escaping in a mysql:// URL).
random() { head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c "$1"; }

MYSQL_PASSWORD=${MYSQL_PASSWORD:-$(random 32)}
MYSQL_ROOT_PASSWORD=${MYSQL_ROOT_PASSWORD:-$(random 32)}
SESSION_KEY=${SESSION_KEY:-$(head -c 64 /dev/urandom | base64 | tr -d '\n')}

kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"
kubectl -n "$NAMESPACE" create secret generic vigil-mysql \
  --from-literal=password="$MYSQL_PASSWORD" \
  --from-literal=root-password="$MYSQL_ROOT_PASSWORD"
kubectl -n "$NAMESPACE" create secret generic vigil-db \
  --from-literal=database-url="mysql://vigil:${MYSQL_PASSWORD}@vigil-mysql:3306/vigil"
kubectl -n "$NAMESPACE" create secret generic vigil-dashboard \
  --from-literal=session-key="$SESSION_KEY"
echo "created vigil-mysql, vigil-db, vigil-dashboard in namespace $NAMESPACE"
