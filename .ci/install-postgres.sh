#!/bin/sh
# Idempotently install Debian's PostgreSQL 15 server (prod's major version), for the tests' PG15 prod
# (websync_dagster_tests/conftest.py: servers15, sync_env15), and pgvector for 15 when apt has it
# (Debian 12 does not: the tests then give that server a stand-in `vector` type).
# The tests run their own cluster from /usr/lib/postgresql/15/bin (EmbeddedPostgres(version=15)): the
# system cluster the package would create is not created, and nothing is started.
set -eu
BIN=/usr/lib/postgresql/15/bin
VECTOR=/usr/share/postgresql/15/extension/vector.control
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

vector_installable() {
    [ ! -e "$VECTOR" ] && apt-cache policy postgresql-15-pgvector 2>/dev/null | grep -q 'Candidate: [0-9]'
}

if [ -x "$BIN/postgres" ] && ! vector_installable; then
    echo "install-postgres: $BIN/postgres already present ($("$BIN/postgres" -V)), nothing to do"
    exit 0
fi

# No service may start during the install: invoke-rc.d asks policy-rc.d, and 101 means "not allowed".
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
fi
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Options::=--force-confold"

if [ ! -x "$BIN/postgres" ]; then
    $SUDO apt-get update -qq
    # postgresql-common first, told not to create the `main` cluster that postgresql-15 would create
    $APT install postgresql-common >/dev/null
    CONF=/etc/postgresql-common/createcluster.conf
    if [ -f "$CONF" ] && ! grep -q '^create_main_cluster = false' "$CONF"; then
        $SUDO sed -i 's/^#* *create_main_cluster *=.*/create_main_cluster = false/' "$CONF"
        grep -q '^create_main_cluster = false' "$CONF" || echo 'create_main_cluster = false' | $SUDO tee -a "$CONF" >/dev/null
    fi
    $APT install postgresql-15 >/dev/null
    echo "install-postgres: installed postgresql-15 ($("$BIN/postgres" -V))"
fi
if vector_installable; then
    $APT install postgresql-15-pgvector >/dev/null
    echo "install-postgres: installed postgresql-15-pgvector"
fi

# Had the install created and started a cluster of 15 all the same, stop it: the tests never use it.
if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters -h 2>/dev/null | while read -r version name _port status _rest; do
        if [ "$version" = 15 ] && [ "$status" = online ]; then
            echo "install-postgres: stopping the system cluster 15/$name (the tests run their own)"
            $SUDO pg_ctlcluster 15 "$name" stop || true
        fi
    done
fi
