#!/usr/bin/env bash
# Test certificates for TLS and mutual TLS (not for production: keys unencrypted, 30 days):
#   scripts/test_certs.sh [DIR] [SERVER_NAME...]     default DIR deploy/tls, names localhost 127.0.0.1
# writes DIR/ca.crt (the CA), tls.crt/tls.key (the server, for those names), client.crt/client.key
# (a client signed by the same CA) and token (a random bearer token): the file names that
# deploy/compose.tls.yml and the Kubernetes secrets use.
set -euo pipefail
dir=${1:-deploy/tls}
shift || true
if [ $# -gt 0 ]; then names=("$@"); else names=(localhost 127.0.0.1); fi
mkdir -p "$dir"
cd "$dir"
san=""
for n in "${names[@]}"; do
  if [[ $n =~ ^[0-9.]+$ ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tsva test CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=${names[0]}" -keyout tls.key -out tls.csr 2>/dev/null
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
  -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") -out tls.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=tsva test client" -keyout client.key -out client.csr 2>/dev/null
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
  -extfile <(printf 'extendedKeyUsage=clientAuth\n') -out client.crt 2>/dev/null
openssl rand -hex 32 > token
rm -f tls.csr client.csr ca.srl
chmod 600 ca.key tls.key client.key token
echo "wrote $dir/{ca.crt,ca.key,tls.crt,tls.key,client.crt,client.key,token} for ${names[*]}"
