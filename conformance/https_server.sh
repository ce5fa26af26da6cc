# Sourced by az.sh and js.sh: starts `opennsg serve` ($opennsg, with the arguments given) over
# HTTPS with a self-signed certificate on a free loopback port, with a fresh token and the service
# tag files in $OPENNSG_SERVICE_TAGS (':'-separated; default: the repository's shipped Public
# file), and stops it when the script exits, whatever happens. Sets work, port, token, server_pid
# and service_tags (the files, absolute, ':'-separated); the certificate is "$work/data/cert.pem",
# the log "$work/server.log".
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
service_tags=""
tag_args=()
IFS=: read -ra tag_files <<< "${OPENNSG_SERVICE_TAGS-$PWD/tests/data/service-tags/ServiceTags_Public_375.json}"
for file in "${tag_files[@]}"; do
    [ -n "$file" ] || continue
    file="$(realpath "$file")"
    service_tags="${service_tags:+$service_tags:}$file"
    tag_args+=(--service-tags "$file")
done
"$opennsg" serve --listen "127.0.0.1:$port" --data "$work/data" --tls-self-signed \
    --token "$token" "${tag_args[@]}" "$@" > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    [ -f "$work/data/cert.pem" ] && python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
done
