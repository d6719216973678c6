#!/usr/bin/env bash
# One-shot initialisation of the Airflow services (compose service `airflow-init`):
# generate the secrets all components share, migrate the metadata database and provide
# the admin password of the simple auth manager. Nothing is baked into the image: the
# password comes from AIRFLOW_ADMIN_PASSWORD or, when that is empty, is generated once
# and kept in the passwords file on the `airflow_shared` volume.
set -euo pipefail

auth=/opt/airflow/shared/auth
mkdir -p "$auth"
umask 077
for name in jwt_secret api_secret_key; do
  # no trailing newline: the components read them with AIRFLOW__..._CMD="cat FILE"
  [ -s "$auth/$name" ] || python -c 'import secrets; print(secrets.token_urlsafe(48), end="")' > "$auth/$name"
done

airflow db migrate

file="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?set AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"
user="${AIRFLOW_ADMIN_USER:-admin}"
mkdir -p "$(dirname "$file")"
if [ -n "${AIRFLOW_ADMIN_PASSWORD:-}" ]; then
  python - "$file" "$user" <<'PY'
import json, os, sys
path, user = sys.argv[1], sys.argv[2]
with open(path, "w") as fh:
    json.dump({user: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, fh)
PY
  echo "airflow-init: password of '$user' set from AIRFLOW_ADMIN_PASSWORD"
elif [ ! -s "$file" ]; then
  python - "$file" "$user" <<'PY'
import json, secrets, sys
path, user = sys.argv[1], sys.argv[2]
with open(path, "w") as fh:
    json.dump({user: secrets.token_urlsafe(18)}, fh)
PY
  echo "airflow-init: generated a password for '$user'; read it with:"
  echo "  docker compose exec airflow-api-server cat $file"
else
  echo "airflow-init: keeping the existing passwords file $file"
fi
