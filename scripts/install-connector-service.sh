#!/usr/bin/env bash
# Installs the Volley connector as a systemd service in one command:
#   sudo scripts/install-connector-service.sh /path/to/config.yml [/path/to/volley]
# Copies the binary to /usr/local/bin, the config to /etc/volley/connector.yml,
# creates the `volley` system user, installs and starts volley-connector.service.
set -euo pipefail
config=${1:?usage: install-connector-service.sh CONFIG.yml [VOLLEY_BINARY]}
binary=${2:-target/release/volley}
here=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$binary" ] || { echo "no volley binary at $binary (cargo build --release first)" >&2; exit 1; }
"$binary" connector --config "$config" --test || { echo "the config does not pass --test; not installing" >&2; exit 1; }
id volley >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin volley
install -m 0755 "$binary" /usr/local/bin/volley
install -d -m 0750 -o root -g volley /etc/volley
install -m 0640 -o root -g volley "$config" /etc/volley/connector.yml
install -m 0644 "$here/packaging/volley-connector.service" /etc/systemd/system/volley-connector.service
systemctl daemon-reload
systemctl enable --now volley-connector.service
systemctl --no-pager status volley-connector.service
