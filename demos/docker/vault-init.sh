#!/bin/sh
# Run once by docker-compose.yml's vault-init service (the hashicorp/vault image, so
# only /bin/sh and the vault CLI): mounts the transit engine and creates the key the
# pipelines use. Safe to run again: an existing mount or key is left as it is.
set -eu
if vault secrets list -format=json | grep -q '"transit/"'; then
  echo "transit already enabled"
else
  vault secrets enable transit
fi
vault write -f transit/keys/customers
echo "transit key 'customers' ready"
