#!/bin/sh
# Installs the Debian packages the project needs, only those missing (idempotent).
# Services are not started: the project runs its own private MariaDB and BOINC clients.
set -eu
PACKAGES="mariadb-server mariadb-client r-base-core qemu-system-x86 qemu-utils boinc-client \
libboinc-app7 libmariadb-dev pkg-config bubblewrap openssl python3-venv"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages:$missing"
# Keep package scripts from starting the system-wide mariadb and boinc-client services.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
