#!/usr/bin/env bash
# Regenerates the development CA and the localhost / 127.0.0.1 server certificate.
# These are for local development and tests only: never deploy them.
set -euo pipefail
cd "$(dirname "$0")"
DAYS="${DAYS:-3650}"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca-key.pem -out ca.pem -days "$DAYS" \
  -subj "/CN=RequestMigration Dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout server-key.pem -out server.csr -subj "/CN=localhost"
cat > server.ext <<'EXT'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -out server.pem -days "$DAYS" -extfile server.ext
rm -f server.csr server.ext ca.srl
echo "wrote ca.pem, ca-key.pem, server.pem, server-key.pem in $(pwd)"
